"""DNeRVDataset: decoded clips and frames of a .dnerv file, in and across processes."""
import csv
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dnerv_fast import DNeRVDataset
from dnerv_fast.errors import BitstreamError, CodecError
from dnerv_fast.codec.pipeline import encode, load
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.media.video_io import write_video

SIZES = {"square": (17, 64, 64), "wide": (9, 72, 100)}   # frames, height, width; wide = 2x2 patches
EXAMPLE = Path(__file__).parents[1] / "examples" / "train_classifier.py"


@pytest.fixture(scope="module")
def dnerv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset")
    sources = []
    for name, (frames, h, w) in SIZES.items():
        sources.append(write_video(moving_pattern(frames, h, w).frames, folder / f"{name}.mp4"))
    path = folder / "two.dnerv"
    encode(sources, path, size="tiny", epochs=1, batch_size=9, keyframe_codec="webp",
           keyframe_quality=80, progress=False)
    return path


@pytest.fixture(scope="module")
def rendered(dnerv):
    """What ``dnerv-fast decode`` gives: uint8 [3, N, H, W] per video name."""
    encoded = load(dnerv)
    return {v.name: torch.from_numpy(encoded.render(i)).permute(3, 0, 1, 2)
            for i, v in enumerate(encoded.videos)}


def assert_decoded_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to the rare one-level rounding flip of a clip decoded in another batch."""
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    diff = (a.int() - b.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-4


def test_clips_are_the_decoded_video(dnerv, rendered):
    ds = DNeRVDataset(dnerv, dtype=torch.uint8)
    assert ds.video_names == ["square", "wide"]
    assert [ds.num_frames(n) for n in ds.video_names] == [17, 9]
    assert ds.frame_size("wide") == (72, 100) and ds.clip_frames == ds.clip_len == 8
    assert len(ds) == 3 + 2                      # model clips: ceil(17 / 8), ceil(9 / 8)
    items = [ds[i] for i in range(len(ds))]
    assert [ds.locate(i) for i in range(len(ds))] == [("square", 0), ("square", 8),
                                                      ("square", 16), ("wide", 0), ("wide", 8)]
    for i, item in enumerate(items):
        name, first = ds.locate(i)
        _, h, w = SIZES[name]
        assert item.shape == (3, 8, h, w)
        frames = rendered[name]
        want = frames[:, [min(f, frames.shape[1] - 1) for f in range(first, first + 8)]]
        assert_decoded_equal(item, want)         # last clip: the last frame repeated
    # the whole video is the clips' real frames, exactly
    assert torch.equal(ds.video("square"), torch.cat([items[0], items[1], items[2][:, :1]], 1))
    assert_decoded_equal(ds.video(1), rendered["wide"])
    floats = DNeRVDataset(dnerv, dtype=torch.float64)
    assert floats[4].dtype == torch.float64
    assert torch.equal(floats[4], items[4].double() / 255)


def test_items_are_fresh_tensors_usable_for_training(dnerv):
    ds = DNeRVDataset(dnerv, cache_clips=4)
    first, again = ds[0], ds[0]                  # the second comes from the cache
    assert torch.equal(first, again) and not first.is_inference()
    first.zero_()                                # must not reach the cache
    assert torch.equal(ds[0], again)
    conv = torch.nn.Conv3d(3, 2, 3)
    conv(ds[1].unsqueeze(0)).sum().backward()
    assert conv.weight.grad is not None


def test_frames_and_longer_clips(dnerv):
    clips = DNeRVDataset(dnerv, dtype=torch.uint8)
    video = clips.video("square")
    frames = DNeRVDataset(dnerv, videos=["square"], unit="frame", dtype=torch.uint8, cache_clips=1)
    assert len(frames) == 17
    assert all(torch.equal(frames[f], video[:, f]) for f in (0, 7, 8, 16))
    assert frames[-1].shape == (3, 64, 64) and torch.equal(frames[-1], video[:, 16])

    long = DNeRVDataset(dnerv, clip_frames=16, dtype=torch.uint8, cache_clips=0)
    assert len(long) == 2 + 1
    assert torch.equal(long[0], video[:, :16])
    assert torch.equal(long[1], video[:, [16] * 16])         # padded with the last frame
    assert long[2].shape == (3, 16, 72, 100)
    dropped = DNeRVDataset(dnerv, clip_frames=16, last="drop")
    assert len(dropped) == 1 and dropped.locate(0) == ("square", 0)   # wide has only 9 frames


def test_labels(dnerv):
    ds = DNeRVDataset(dnerv, videos=["wide", "square"], labels={"square": 0, "wide": 1})
    assert ds.video_names == ["wide", "square"]
    clip, label = ds[0]
    assert label == 1 and clip.shape == (3, 8, 72, 100)
    assert ds[len(ds) - 1][1] == 0
    ds = DNeRVDataset(dnerv, unit="frame", labels=len, transform=lambda x: x.mean())
    value, label = ds[0]
    assert label == len("square") and value.dim() == 0
    with pytest.raises(KeyError, match="no entry for video 'wide'"):
        DNeRVDataset(dnerv, labels={"square": 0})


def test_pickling_leaves_the_model_behind(dnerv):
    ds = DNeRVDataset(dnerv, labels={"square": 0, "wide": 1})
    data = pickle.dumps(ds)
    assert len(data) < 4000                      # the tiny model alone is ~50x larger
    copy = pickle.loads(data)
    assert copy._decoder is None
    assert torch.equal(copy[3][0], ds[3][0]) and copy[3][1] == 1


def test_keyframes_are_decoded_on_demand_and_bounded(dnerv, monkeypatch):
    """Opening a file decodes no keyframe; a reader keeps few videos' keyframes at once."""
    import dnerv_fast.dataset as dataset_module
    assert all(v._keyframes is None for v in load(dnerv).videos)
    monkeypatch.setattr(dataset_module, "KEYFRAME_VIDEOS", 1)
    ds = DNeRVDataset(dnerv, cache_clips=0)
    first = ds[0]
    videos = ds._state().videos
    assert videos[0]._keyframes is not None and videos[1]._keyframes is None
    ds[len(ds) - 1]                              # the other video
    assert videos[0]._keyframes is None and videos[1]._keyframes is not None
    assert torch.equal(ds[0], first)             # decoded again, same pixels


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers_give_the_same_items(dnerv, context):
    ds = DNeRVDataset(dnerv, videos=["square"], labels={"square": 3})
    serial = list(DataLoader(ds, batch_size=2))
    parallel = list(DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context=context))
    assert len(serial) == len(parallel) == 2
    for (a, la), (b, lb) in zip(serial, parallel):
        assert torch.equal(a, b) and torch.equal(la, lb) and la.tolist() == [3] * len(la)


def test_errors(dnerv, tmp_path):
    with pytest.raises(CodecError, match="cannot read"):
        DNeRVDataset(tmp_path / "missing.dnerv")
    bad = tmp_path / "bad.dnerv"
    data = dnerv.read_bytes()
    bad.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    with pytest.raises(BitstreamError, match="checksum"):
        DNeRVDataset(bad)
    with pytest.raises(KeyError, match="no video named 'nope'"):
        DNeRVDataset(dnerv, videos=["square", "nope"])
    with pytest.raises(ValueError, match="unit"):
        DNeRVDataset(dnerv, unit="patch")
    with pytest.raises(ValueError, match="multiple of the model's clip length 8"):
        DNeRVDataset(dnerv, clip_frames=12)
    with pytest.raises(ValueError, match="clip_frames is for unit='clip'"):
        DNeRVDataset(dnerv, unit="frame", clip_frames=8)
    with pytest.raises(ValueError, match="last"):
        DNeRVDataset(dnerv, last="wrap")
    with pytest.raises(ValueError, match="dtype"):
        DNeRVDataset(dnerv, dtype=torch.int32)
    ds = DNeRVDataset(dnerv)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    with pytest.raises(KeyError, match="no video named 'nope'"):
        ds.video("nope")
    with pytest.raises(IndexError):
        ds.num_frames(2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_decodes_on_the_gpu(dnerv):
    cpu = DNeRVDataset(dnerv, dtype=torch.uint8)
    gpu = DNeRVDataset(dnerv, dtype=torch.uint8, device="cuda")
    item = gpu[3]
    assert item.device.type == "cuda"
    diff = (item.cpu().int() - cpu[3].int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-2


def test_example_trains_a_classifier(dnerv, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_classifier", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([("name", "label", "split"), ("square", "a", "train"),
                                 ("wide", "b", "val")])
    metrics = example.main(["--dnerv", str(dnerv), "--labels", str(labels), "--epochs", "1",
                            "--steps", "2", "--input-size", "32", "--device", "cpu", "-q"])
    assert set(metrics) == {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert np.isfinite(metrics["train_loss"]) and 0 <= metrics["val_acc"] <= 1
    out = capsys.readouterr().out
    assert "2 classes, 3 training clips, 2 validation clips" in out and "epoch 1/1" in out


def test_example_motion_videos():
    spec = importlib.util.spec_from_file_location("train_classifier", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rng = np.random.default_rng(0)
    right = example.drifting_texture((1, 0), 3, 32, rng)
    assert right.shape == (3, 32, 32, 3) and right.dtype == np.uint8
    # the pattern moves 2 px right per frame
    assert np.abs(right[1, :, 2:].astype(int) - right[0, :, :-2]).max() <= 1
