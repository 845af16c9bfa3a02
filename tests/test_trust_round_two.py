"""Trust, round two: no program run by an image, one run per output, memory
bounded by content, no internal error from input, safe printing, pipes, conformance."""
from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest
from PIL import Image

from dnerv_fast.errors import CodecError, KeyframeCodecError, VideoReadError

sys.path.insert(0, str(Path(__file__).resolve().parent))

HERE = Path(__file__).resolve().parent


def _eps_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="EPS")
    return buf.getvalue()


@pytest.fixture
def trap_gs(tmp_path, monkeypatch):
    """A stand-in ``gs`` first on PATH that records any call; returns the record's path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "gs-was-run"
    for name in ("gs", "gswin32c", "gswin64c"):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho \"$@\" > '{record}'\nexit 1\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


# ---- images by allow-list ---------------------------------------------------------------

def test_a_frame_that_is_really_eps_never_runs_ghostscript(tmp_path, trap_gs):
    from dnerv_fast.media.video_io import read_video
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2):
        Image.new("RGB", (16, 16), (i, 2, 3)).save(folder / f"00{i}.png")
    (folder / "003.png").write_bytes(_eps_bytes())
    with pytest.raises(VideoReadError, match="003.png") as info:
        read_video(folder)
    assert "PNG, JPEG, WEBP, BMP, TIFF" in str(info.value)
    assert not trap_gs.exists()


@pytest.mark.parametrize("codec", ["png", "jpeg", "webp"])
def test_a_keyframe_that_is_really_eps_never_runs_ghostscript(trap_gs, codec):
    from dnerv_fast.media.keyframes import decode_keyframe
    with pytest.raises(KeyframeCodecError):
        decode_keyframe(_eps_bytes(), codec, (16, 16))
    assert not trap_gs.exists()


def test_the_image_reader_opens_only_the_allowed_formats(tmp_path):
    from dnerv_fast.media.images import ALLOWED_FORMATS, UnsupportedImageError, open_image
    assert ALLOWED_FORMATS == ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
    for fmt in ALLOWED_FORMATS:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format=fmt)
        buf.seek(0)
        with open_image(buf) as im:
            assert im.format == fmt
    for fmt in ("GIF", "PPM", "ICO", "TGA", "EPS", "PCX"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format=fmt)
        buf.seek(0)
        with pytest.raises(UnsupportedImageError):
            open_image(buf)
    with pytest.raises(UnsupportedImageError):   # a PNG asked to be opened as JPEG only
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format="PNG")
        buf.seek(0)
        open_image(buf, ["JPEG"])


# ---- format conformance -----------------------------------------------------------------

from dnerv_fast.codec import pipeline  # noqa: E402
from dnerv_fast.cli import main  # noqa: E402
from dnerv_fast.errors import BitstreamError, MemoryBudgetError  # noqa: E402
from hostile_files import small_container, with_header, write  # noqa: E402


@pytest.fixture(scope="module")
def base():
    return small_container()


def _config(base, **changes):
    config = dict(base.header["config"])
    for key, value in changes.items():
        if value is ...:
            config.pop(key)
        else:
            config[key] = value
    return config


def _videos(base, **changes):
    videos = [dict(v) for v in base.header["videos"]]
    for key, value in changes.items():
        if value is ...:
            videos[0].pop(key)
        else:
            videos[0][key] = value
    return videos


CONFORMANCE = {
    **{f"config without {k}": lambda b, k=k: {"config": _config(b, **{k: ...})}
       for k in ("strides", "clip_len", "embed_levels", "mean", "std", "name", "stem_dim",
                 "expansion", "embed_base")},
    **{f"video without {k}": lambda b, k=k: {"videos": _videos(b, **{k: ...})}
       for k in ("name", "fps", "frames")},
    **{f"header without {k}": lambda b, k=k: {k: ...}
       for k in ("format", "version", "prune", "keyframe_quality", "parameters")},
    "version 2.0": lambda b: {"version": 2.0},
    "version true": lambda b: {"version": True},
    "height 36.0": lambda b: {"videos": _videos(b, height=36.0)},
    "clip_len 4.0": lambda b: {"config": _config(b, clip_len=4.0)},
    "fps true": lambda b: {"videos": _videos(b, fps=True)},
    "inpainting null": lambda b: {"inpainting": None},
    "mean as object": lambda b: {"config": _config(b, mean={"r": 0.5})},
}


@pytest.mark.parametrize("case", sorted(CONFORMANCE))
def test_every_required_field_is_required_with_its_exact_type(tmp_path, base, case):
    path = write(tmp_path / "f.dnerv", with_header(base, **CONFORMANCE[case](base)))
    with pytest.raises(BitstreamError, match="header"):
        pipeline.load(path)


def test_an_empty_rans_stream_is_refused(tmp_path, base):
    import copy
    import struct

    from dnerv_fast.codec.header import parse_header
    from dnerv_fast.codec.weights import model_shapes, read_layout
    from dnerv_fast.codec.bitstream import FORMAT_VERSION, to_bytes
    head = parse_header(base.header, version=FORMAT_VERSION, keyframes=len(base.keyframes),
                        clips_per_pass=8)
    layout = read_layout(base.weights, model_shapes(head.config, head.parameters), head.bits)
    damaged = copy.deepcopy(base)
    damaged.weights = base.weights[:layout.stream_start] + struct.pack("<I", 0)
    path = write(tmp_path / "f.dnerv", to_bytes(damaged))
    with pytest.raises(BitstreamError, match="rANS stream"):
        pipeline.load(path)


# ---- memory bounded by content ----------------------------------------------------------

MEMORY_CASES = {
    # one 16 GiB frame buffer (the render buffer of the whole video) from a small file
    "16 GiB of frames": lambda b: {"videos": _videos(b, height=8192, width=8192, frames=80)},
    "4096x4096 patches": lambda b: {"config": _config(b, patch_size=[4096, 4096])},
    "patch_size 128x4096": lambda b: {"config": _config(b, patch_size=[128, 4096])},
    "0.93 x 2^28 parameters": lambda b: {"parameters": int(0.93 * 2**28)},
}


@pytest.mark.parametrize("case", sorted(MEMORY_CASES))
def test_memory_beyond_the_budget_is_refused_before_allocating(tmp_path, base, case, capsys):
    import copy

    from dnerv_fast.codec.bitstream import to_bytes
    from dnerv_fast.codec.header import keyframe_count
    container = copy.deepcopy(base)
    container.header.update(MEMORY_CASES[case](base))
    clip_len = container.header["config"]["clip_len"]
    needed = sum(keyframe_count(v["frames"], clip_len) for v in container.header["videos"])
    container.keyframes = (container.keyframes * needed)[:needed]   # as many as declared
    path = write(tmp_path / "f.dnerv", to_bytes(container))
    with pytest.raises(MemoryBudgetError, match="max_memory=") as info:
        pipeline.load(path, max_memory="512M")
    assert "needs" in str(info.value) and "max_memory=" in str(info.value)
    assert main(["decode", str(path), "-o", str(tmp_path / "out"), "-q",
                 "--max-memory", "512M"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-memory" in err[0], err


def test_the_budget_defaults_to_a_share_of_available_memory():
    from dnerv_fast.codec.memory import DEFAULT_SHARE, available_memory, memory_budget, parse_size
    size, why = memory_budget(None)
    assert size == int(available_memory() * DEFAULT_SHARE) and "available" in why
    assert parse_size("12G") == 12 * 2**30 and parse_size("1.5GiB") == 3 * 2**29
    assert parse_size(1000) == 1000 and parse_size("512MB") == 512 * 10**6
    from dnerv_fast.errors import UsageError
    for bad in ("x", "-1G", "0", "12Q", True):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_a_valid_file_decodes_within_its_baseline_plus_2_gib_of_address_space(tmp_path, base):
    import subprocess
    from dnerv_fast.codec.bitstream import to_bytes
    path = write(tmp_path / "f.dnerv", to_bytes(base))
    script = f"""
import resource, sys
sys.path.insert(0, {str(HERE)!r})
import torch
torch.set_num_threads(1)
from dnerv_fast.codec import pipeline
from dnerv_fast.codec.render import render_video
def vm():
    for line in open('/proc/self/status'):
        if line.startswith('VmSize:'):
            return int(line.split()[1]) * 1024
limit = vm() + (2 << 30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
encoded = pipeline.load({str(path)!r})
frames = encoded.render(0)
print('decoded', frames.shape)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "decoded" in result.stdout, result.stderr[-2000:]


# ---- no internal error from input -------------------------------------------------------

def test_lone_surrogate_and_escape_names_decode_and_print_escaped(tmp_path, base, capsys):
    videos = _videos(base, name="\ud800x")
    videos[1]["name"] = "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\\u202egpj.exe"
    path = write(tmp_path / "f.dnerv", with_header(base, videos=videos))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b]8" in out and "\\ud800x" in out
    out_dir = tmp_path / "out"
    assert main(["decode", str(path), "-o", str(out_dir), "-q", "--format", "png"]) == 0
    capsys.readouterr()
    assert len(list(out_dir.iterdir())) == 2


def test_printable_escapes_controls_bidi_and_surrogates():
    from dnerv_fast.printable import printable
    assert printable("plain é 漢") == "plain é 漢"
    assert printable("a\x1b[31mb\u202ec\ud800\n\x9b") == "a\\x1b[31mb\\u202ec\\ud800\\x0a\\x9b"


def test_a_full_disk_inside_torch_save_is_a_package_error(tmp_path, monkeypatch):
    import torch

    from dnerv_fast.errors import OutputPathError
    from dnerv_fast.train import checkpoint

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0"
                           "\nPytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(checkpoint.torch, "save", full)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(OutputPathError, match="file write failed"):
        checkpoint.save_checkpoint(tmp_path / "c.ckpt", model, torch.optim.SGD(model.parameters(), 0.1),
                                   1, {}, torch.Generator(), [])
    assert list(tmp_path.iterdir()) == []


def test_an_allocation_failure_inside_torch_is_a_package_error(tmp_path, base, monkeypatch):
    from dnerv_fast import dataset as dataset_module
    from dnerv_fast.codec.bitstream import to_bytes
    from dnerv_fast.errors import OutOfMemoryError
    path = write(tmp_path / "f.dnerv", to_bytes(base))
    ds = dataset_module.DNeRVDataset(path)

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                           "not enough memory: you tried to allocate 17179869184 bytes.")
    monkeypatch.setattr(dataset_module, "render_clips", no_memory)
    with pytest.raises(OutOfMemoryError, match="out of memory"):
        ds[0]
    assert isinstance(OutOfMemoryError("x"), CodecError)


def test_a_damaged_keyframe_is_refused_when_the_dataset_is_built(tmp_path, base):
    import copy

    from dnerv_fast.codec.bitstream import to_bytes
    from dnerv_fast.dataset import DNeRVDataset
    damaged = copy.deepcopy(base)
    damaged.keyframes[-1] = damaged.keyframes[-1][:40]
    path = write(tmp_path / "f.dnerv", to_bytes(damaged))
    with pytest.raises(KeyframeCodecError):
        DNeRVDataset(path)


def test_a_negative_mask_seed_is_refused_from_the_command_line_and_python(tmp_path, capsys):
    from dnerv_fast.train.masks import BoxMasks, MaskError
    with pytest.raises(MaskError, match="seed"):
        BoxMasks(2, 4, -1)
    with pytest.raises(SystemExit) as info:
        main(["encode", "x.mp4", "-o", str(tmp_path / "x.dnerv"), "--mask-boxes", "2",
              "--mask-seed", "-1"])
    assert info.value.code == 2
    assert "internal" not in capsys.readouterr().err


@pytest.mark.parametrize("env, args", [({"LOCAL_RANK": "abc"}, []),
                                       ({"WORLD_SIZE": "two"}, [])])
def test_bad_environment_ends_in_one_error_line(tmp_path, monkeypatch, capsys, env, args):
    from dnerv_fast.media.synthetic import moving_pattern
    from dnerv_fast.media.video_io import write_video
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: pytest.fail("training started"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clip = tmp_path / "clip.mp4"
    video = moving_pattern(3, 32, 32, name="clip")
    write_video(video.frames, clip, video.fps, "mp4")
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.dnerv"), "-q", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and "internal" not in err[0], err


def test_decode_does_not_stat_the_input_again(tmp_path, base, monkeypatch):
    """The file replaced (here: removed) once read gives a valid decode, not exit 70."""
    from dnerv_fast.codec import bitstream
    from dnerv_fast.codec.bitstream import to_bytes
    path = write(tmp_path / "f.dnerv", to_bytes(base))
    real = bitstream.read_container

    def read_then_remove(p):
        container = real(p)
        os.unlink(p)
        return container
    monkeypatch.setattr(pipeline, "read_container", read_then_remove)
    encoded = pipeline.load(path)
    assert encoded.file_bytes == len(to_bytes(base))


# ---- pipes ------------------------------------------------------------------------------

def test_a_fifo_input_is_refused_at_once(tmp_path, capsys):
    import subprocess
    fifo = tmp_path / "in.mp4"
    os.mkfifo(fifo)
    code = ("import sys; from dnerv_fast.cli import main; "
            f"sys.exit(main(['encode', {str(fifo)!r}, '-o', {str(tmp_path / 'x.dnerv')!r}, '-q']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stderr
    assert "pipe" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---- one run per output -----------------------------------------------------------------

_HOLDER = """
import sys, time
from dnerv_fast.codec import pipeline
def slow_train(*args, **kwargs):
    print('training', flush=True)
    time.sleep(600)
pipeline.train = slow_train
pipeline.encode(sys.argv[1:-1], sys.argv[-1], epochs=1, progress=False, keyframe_codec='webp')
"""


def test_a_second_run_to_the_same_output_fails_at_once_naming_the_first(tmp_path):
    import subprocess
    import time

    from dnerv_fast.media.synthetic import moving_pattern
    from dnerv_fast.media.video_io import write_video
    clip = tmp_path / "clip.mp4"
    video = moving_pattern(3, 32, 32, name="clip")
    write_video(video.frames, clip, video.fps, "mp4")
    out = tmp_path / "x.dnerv"
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(clip), str(out)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "training"
        lock = tmp_path / "x.dnerv.lock"
        assert lock.read_text().strip() == str(first.pid)
        for command in (["encode", str(clip), "-o", str(out), "-q", "--epochs", "1"],
                        ["decode", str(out), "-o", str(out), "-q"]):
            start = time.monotonic()
            second = subprocess.run([sys.executable, "-m", "dnerv_fast.cli", *command],
                                    capture_output=True, text=True, timeout=300)
            assert second.returncode == 1
            err = second.stderr.strip().splitlines()
            assert len(err) == 1 and f"PID {first.pid}" in err[0], err
            assert first.poll() is None and lock.exists()
        assert time.monotonic() - start < 120
    finally:
        first.kill()
        first.wait()
    # A lock left by a dead process is taken over.
    from dnerv_fast.locks import output_lock
    assert lock.exists()
    with output_lock(out) as taken:
        assert taken.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_the_lock_is_released_on_every_exit_path(tmp_path):
    from dnerv_fast.errors import OutputLockedError
    from dnerv_fast.locks import output_lock
    out = tmp_path / "o.dnerv"
    with pytest.raises(KeyError):
        with output_lock(out):
            raise KeyError("boom")
    with output_lock(out):
        with pytest.raises(OutputLockedError, match=f"PID {os.getpid()}"):
            with output_lock(out):
                pass
    assert list(tmp_path.iterdir()) == []
