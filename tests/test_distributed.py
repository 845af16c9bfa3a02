"""Data-parallel encoding: two gloo processes on the CPU train what one process trains.

What is compared, and why in float64: the sharding and loss weighting are exact in real
arithmetic, so the two runs differ only by rounding (gradients agree to ~1e-5 relative in
float32). But Adam divides each gradient by its own running magnitude, so a weight whose
gradient is pure rounding noise (the tiny model has many: |g| < 1e-9 around the stem) moves
by about +-lr either way, and float32 weights drift apart by up to lr per step. In float64
that noise is ~1e-16 and the trained weights must agree to 1e-12. The float32 command-line
run through torchrun is compared on what does not depend on that noise: the header, the
keyframes and the files left behind, and its decoded frames must stay close.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dnerv_fast.cli import main
from dnerv_fast.codec.bitstream import read_container
from checkpoint_hooks import copy_checkpoint_after
from dnerv_fast.errors import CodecError
from dnerv_fast.media.keyframes import encode_keyframe
from dnerv_fast.codec.pipeline import load
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.clips.data import prepare_video
from dnerv_fast.train import TrainSettings, train
from dnerv_fast.clips.data import keyframe_images
from dnerv_fast.devices import resolve_device
from dnerv_fast.train.distributed import session
from dnerv_fast.train.loss import loss_sums, reconstruction_loss
from dnerv_fast.media.video_io import write_video

WORLD = 2
# 64x128 frames are 2 tiny patches; 9 frames are 2 clips each (the second holds one real
# frame): 4 clips, so global batches of 3 leave a last batch of 1 clip, and the second
# process a zero-weight stand-in clip.
SETTINGS = TrainSettings(epochs=2, batch_size=3)


def _video():
    return moving_pattern(9, 64, 128, name="pattern")


def _free_ports(count: int) -> tuple[int, ...]:
    """Distinct ports nothing listens on (all held open while choosing)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in sockets)
    finally:
        for s in sockets:
            s.close()


def _prepared():
    video, config = _video(), DNeRV.from_config("tiny").config
    keys = [encode_keyframe(f, "png")[0] for f in keyframe_images(video, config)]
    return [prepare_video(video, config, "png", keys)]


def _train64(dist, checkpoint, resume):
    torch.manual_seed(0)
    model = DNeRV.from_config("tiny").double()
    history = train(model, _prepared(), SETTINGS, checkpoint=checkpoint, checkpoint_every=1,
                    resume=resume, progress=False, dist=dist)
    return model.state_dict(), history


def _worker(rank: int, ports: tuple[int, int], tmp: str) -> None:
    """One of two torchrun-like processes: the environment is all it is given."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    out = Path(tmp)
    with pytest.raises(CodecError, match="boom"):
        with session("cpu") as dist:
            assert torch.distributed.is_initialized()
            raise CodecError("boom")
    assert not torch.distributed.is_initialized()          # left on error too
    os.environ["MASTER_PORT"] = str(ports[1])
    with session("cpu") as dist:
        assert (dist.rank, dist.world_size, dist.device.type) == (rank, WORLD, "cpu")
        assert dist.map(lambda x: (x * x, dist.rank), range(5)) == \
            [(x * x, x % WORLD) for x in range(5)]
        try:
            dist.on_main(lambda: 1 / 0)
        except ZeroDivisionError:
            assert dist.is_main
        except CodecError as e:
            assert not dist.is_main and "ZeroDivisionError" in str(e)
        scratch = _train64(dist, out / "scratch.ckpt", resume=False)
        resumed = _train64(dist, out / "resume.ckpt", resume=True)
        if dist.is_main:
            torch.save({"scratch": scratch, "resumed": resumed}, out / "two.pt")
    assert not torch.distributed.is_initialized()


def test_two_processes_train_like_one(tmp_path, monkeypatch):
    saved = tmp_path / "resume.ckpt"
    copy_checkpoint_after(monkeypatch, 1, saved)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)           # like each worker; also much faster on a busy machine
    try:
        one, one_history = _train64(None, tmp_path / "one.ckpt", resume=False)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.undo()
    mp.spawn(_worker, args=(_free_ports(2), str(tmp_path)), nprocs=WORLD)
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    for run in ("scratch", "resumed"):           # from scratch; resumed after epoch 1
        weights, history = two[run]
        for key, value in one.items():
            assert torch.allclose(weights[key], value, rtol=0, atol=1e-12), (run, key)
        assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in one_history],
                                                             rel=1e-9)
        assert [h["psnr"] for h in history] == pytest.approx([h["psnr"] for h in one_history],
                                                             rel=1e-9)
    assert torch.load(tmp_path / "scratch.ckpt", weights_only=False)["epoch"] == 2


def test_loss_sums_add_up_over_processes():
    g = torch.Generator().manual_seed(0)
    out, ref = torch.rand(5, 3, 8, 32, 32, generator=g), torch.rand(5, 3, 8, 32, 32, generator=g)
    mask = torch.rand(5, 8, generator=g) > 0.3
    visible = (torch.rand(5, 1, 8, 32, 32, generator=g) > 0.05).float()
    for seen in (None, visible):
        whole = reconstruction_loss(out, ref, mask, "ucf101", seen)
        parts = [loss_sums(out[s], ref[s], mask[s], "ucf101", None if seen is None else seen[s])
                 for s in (slice(0, 3), slice(3, 5))]
        pixels, windows = sum(p.pixels for p in parts), sum(p.windows for p in parts)
        averaged = sum(WORLD * p.loss(pixels, windows) for p in parts) / WORLD
        assert averaged.item() == pytest.approx(whole.item(), rel=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_device_errors(tmp_path, capsys):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(CodecError, match="CUDA"):
        resolve_device("cuda")
    with pytest.raises(CodecError, match="unknown device"):
        resolve_device("tpu")
    src = write_video(_video().frames, tmp_path / "v.mp4")
    assert main(["encode", str(src), "-o", str(tmp_path / "v.dnerv"), "--device", "cuda"]) == 1
    assert "CUDA" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_torchrun_command_line(tmp_path):
    """The real launcher: ``torchrun -m dnerv_fast.cli encode`` against one process."""
    (tmp_path / "src").mkdir()
    src = write_video(_video().frames, tmp_path / "src" / "pattern.mp4")
    # A pinned, moderate rate: at the short-run default (about 1e-2) two epochs amplify the
    # processes' different float summation order into whole 8-bit levels.
    common = [str(src), "--epochs", "2", "--batch-size", "3", "--lr", "5e-4", "--keyframe-codec", "webp",
              "--device", "cpu", "-q"]
    one, two = tmp_path / "one" / "x.dnerv", tmp_path / "two" / "x.dnerv"
    one.parent.mkdir()
    two.parent.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "dnerv_fast.cli", "encode", *common,
                             "-o", str(one)], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    torchrun = Path(sys.executable).with_name("torchrun")
    both = subprocess.run([str(torchrun), "--standalone", f"--nproc_per_node={WORLD}",
                           "-m", "dnerv_fast.cli", "encode", *common, "--checkpoint-every", "1",
                           "-o", str(two)], env=env, capture_output=True, text=True)
    assert both.returncode == 0, both.stderr
    assert both.stdout.count("wrote") == 1                 # only the main process reports
    assert [p.name for p in two.parent.iterdir()] == ["x.dnerv"]   # no checkpoint, no temp
    a, b = read_container(one), read_container(two)
    assert a.header == b.header and a.keyframes == b.keyframes
    frames_one, frames_two = load(one).render(0), load(two).render(0)
    diff = np.abs(frames_one.astype(int) - frames_two).mean()
    assert diff < 0.5, diff
