"""Files from strangers, users' folders and bad input never hurt the user.

Hostile .dnerv files are built from a tiny valid one (tests/hostile_files.py); each attack
must end in one ``error:`` line and a non-zero exit, or in a valid decode that writes only
inside the output folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnerv_fast.cli import main
from dnerv_fast.codec import pipeline
from dnerv_fast.atomic import atomic_dir, write_bytes_atomic
from dnerv_fast.codec.bitstream import to_bytes
from dnerv_fast.errors import BitstreamError, CheckpointError, QuantizationError
from dnerv_fast.codec.header import keyframe_count
from dnerv_fast.codec.names import safe_names
from dnerv_fast.codec.weights import quantize_state_dict
from dnerv_fast.configs import CONFIGS, ModelConfig
from dnerv_fast.schedule import keyframe_indices
from dnerv_fast.train.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_files import SMALL, small_container, with_header, write  # noqa: E402

HERE = Path(__file__).resolve().parent
# Hostile files may declare legitimate but heavy content (a large patch for a small video);
# no case may make decoding take this much more memory than decoding the valid file does.
MAX_FUZZ_GROWTH_MIB = 768


@pytest.fixture(scope="module")
def base():
    return small_container()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dnerv-fast {command}: error: "), err
    return err[0]


# ---- output names -------------------------------------------------------------------------

def test_safe_names_map_every_dangerous_name():
    names = ["../../x", "/etc/passwd", "a/b\\c", "..", ".", "", "CON", "nul.txt", "a\0b",
             " .hidden. ", "A", "a", "x" * 400, "ok"]
    out = safe_names(names)
    assert len(set(n.casefold() for n in out)) == len(out)
    for n in out:
        assert n and "/" not in n and "\\" not in n and "\0" not in n
        assert not n.startswith(".") and n not in ("..", ".")
        assert len(n.encode()) <= 120
    assert out[:3] == ["_.._x", "_etc_passwd", "a_b_c"] and out[6] == "_CON"
    assert out[10:12] == ["A", "a_2"] and out[-1] == "ok"


@pytest.mark.parametrize("fmt", ["mp4", "png"])
def test_decode_never_writes_outside_the_output_folder(tmp_path, base, fmt, capsys):
    attack = tmp_path / "attack"
    attack.mkdir()
    c = small_container(names=("../../escaped", str(tmp_path / "abs")))
    path = write(attack / "f.dnerv", to_bytes(c))
    before = _files(tmp_path)
    assert main(["decode", str(path), "-o", str(attack / "out"), "--format", fmt, "-q"]) == 0
    new = _files(tmp_path) - before
    assert new and all(n.startswith("attack/out") for n in new), new
    names = sorted(["_.._escaped", str(tmp_path / "abs").replace("/", "_")])
    assert sorted(p.name for p in (attack / "out").iterdir()) == (
        [f"{n}.mp4" for n in names] if fmt == "mp4" else names)


def test_overwrite_replaces_only_what_decode_writes(tmp_path, base, capsys):
    path = write(tmp_path / "f.dnerv", to_bytes(base))
    out = tmp_path / "out"
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 0
    (out / "mine.txt").write_text("keep me")
    (out / "a.mp4").write_bytes(b"old")
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 1          # no --overwrite
    assert "already exists" in _one_error_line(capsys, "decode")
    assert main(["decode", str(path), "-o", str(out), "-q", "--overwrite"]) == 0
    assert (out / "mine.txt").read_text() == "keep me"
    assert (out / "a.mp4").read_bytes() != b"old"
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mp4", "mine.txt"]


def test_overwrite_refuses_to_mix_png_frames_before_decoding(tmp_path, base, capsys, monkeypatch):
    path = write(tmp_path / "f.dnerv", to_bytes(base))
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "notes.txt").write_text("mine")
    monkeypatch.setattr(pipeline.Encoded, "stream", lambda *a, **k: pytest.fail("decoded"))
    assert main(["decode", str(path), "-o", str(out), "--format", "png", "--overwrite", "-q"]) == 1
    assert "notes.txt" in _one_error_line(capsys, "decode")
    assert _files(out) == {"a", "a/notes.txt"}


def test_a_folder_appearing_during_decode_is_left_alone(tmp_path, base, capsys, monkeypatch):
    path = write(tmp_path / "f.dnerv", to_bytes(base))
    out = tmp_path / "out"
    stream = pipeline.Encoded.stream

    def stream_then_intrude(self, *args, **kwargs):
        if not out.exists():
            out.mkdir()
            (out / "theirs.txt").write_text("not yours")
        return stream(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.Encoded, "stream", stream_then_intrude)
    assert main(["decode", str(path), "-o", str(out), "-q"]) == 1
    assert "appeared" in _one_error_line(capsys, "decode")
    assert _files(out) == {"theirs.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.dnerv", "out"]   # no leftovers


def test_a_killed_run_leaves_partials_that_the_next_write_removes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".f.bin.dnerv-partial-{dead.pid}-abc.bin"
    live = tmp_path / f".f.bin.dnerv-partial-{os.getppid()}-abc.bin"
    other = tmp_path / f".g.bin.dnerv-partial-{dead.pid}-abc.bin"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    write_bytes_atomic(tmp_path / "f.bin", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "f.bin"])


def test_outputs_are_never_created_in_missing_folders(tmp_path, capsys):
    with pytest.raises(Exception, match="does not exist"):
        write_bytes_atomic(tmp_path / "missing" / "f.bin", b"x")
    with pytest.raises(Exception, match="does not exist"):
        with atomic_dir(tmp_path / "missing" / "d"):
            pass
    assert list(tmp_path.iterdir()) == []


# ---- encode: outputs checked before training, interruption, bad settings ------------------

@pytest.fixture()
def no_training(monkeypatch):
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: pytest.fail("training started"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from dnerv_fast.media.synthetic import moving_pattern
    from dnerv_fast.media.video_io import write_video
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    video = moving_pattern(9, 64, 64, name="clip")
    write_video(video.frames, path, video.fps, "mp4")
    return path


@pytest.mark.parametrize("output, message", [
    ("x.mp4", "does not end in .dnerv"),
    ("missing/x.dnerv", "does not exist"),
    ("/proc/x.dnerv", "not writable"),
])
def test_encode_checks_its_output_before_training(tmp_path, clip, no_training, capsys,
                                                  output, message):
    target = output if output.startswith("/") else str(tmp_path / output)
    assert main(["encode", str(clip), "-o", target, "--epochs", "1", "-q"]) == 1
    assert message in _one_error_line(capsys, "encode")


@pytest.mark.parametrize("lr", ["inf", "nan", "1e6", "0", "-1"])
def test_absurd_learning_rates_are_refused(tmp_path, clip, no_training, capsys, lr):
    with pytest.raises(SystemExit) as exit_:          # the parser checks bounds: usage, exit 2
        main(["encode", str(clip), "-o", str(tmp_path / "x.dnerv"), "--lr", lr, "-q"])
    assert exit_.value.code == 2
    assert "argument --lr: must be a number in (0, 1]" in capsys.readouterr().err


def test_a_checkpoint_of_an_earlier_run_is_not_replaced_silently(tmp_path, clip, no_training,
                                                                 capsys):
    out = tmp_path / "x.dnerv"
    Path(f"{out}.ckpt").write_bytes(b"earlier run")
    assert main(["encode", str(clip), "-o", str(out), "-q"]) == 1
    assert "--resume" in _one_error_line(capsys, "encode")
    assert Path(f"{out}.ckpt").read_bytes() == b"earlier run"


def test_ctrl_c_during_encode_says_how_to_resume(tmp_path, clip, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "train", interrupted)
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.dnerv"), "-q"]) == 130
    assert "--checkpoint-every" in _one_error_line(capsys, "encode")
    assert list(tmp_path.iterdir()) == []


def test_an_internal_error_is_one_line_naming_a_bug_and_its_log(tmp_path, clip, capsys,
                                                               monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("something internal")
    monkeypatch.setattr(pipeline, "train", broken)
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.dnerv"), "-q"]) == 70
    line = _one_error_line(capsys, "encode")
    assert "a bug in dnerv_fast" in line and "TypeError: something internal" in line
    log = Path(line.rsplit("the traceback is in ", 1)[1])
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
    log.unlink()
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.dnerv"), "-q", "--debug"]) == 70
    assert "Traceback" in capsys.readouterr().err


def test_non_finite_weights_are_refused():
    state = {"w": torch.tensor([[1.0, float("nan")]])}
    with pytest.raises(QuantizationError, match="'w'.*NaN"):
        quantize_state_dict(state, 8)


# ---- checkpoints ----------------------------------------------------------------------------

class _Planted:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_checkpoint_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    planted = _Planted()
    planted.marker = marker
    torch.save({"fingerprint": {}, "x": planted}, tmp_path / "x.ckpt")
    with pytest.raises(CheckpointError, match="plain tensors"):
        load_checkpoint(tmp_path / "x.ckpt", {}, torch.nn.Linear(1, 1))
    assert not marker.exists()


def _checkpoint(tmp_path: Path, net: torch.nn.Module, fingerprint: dict, **changes) -> Path:
    state = {"model": net.state_dict(), "optimizer": {}, "epoch": 1, "fingerprint": fingerprint,
             "rng": {}, "sampler": torch.zeros(1), "history": [], **changes}
    torch.save(state, tmp_path / "x.ckpt")
    return tmp_path / "x.ckpt"


def test_a_checkpoint_missing_a_tensor_is_named(tmp_path):
    model = torch.nn.Linear(2, 2)
    partial = {"weight": model.weight.detach()}
    path = _checkpoint(tmp_path, model, {}, model=partial)
    with pytest.raises(CheckpointError, match="'bias' is missing"):
        load_checkpoint(path, {}, model)


def test_a_checkpoint_of_other_settings_names_the_setting(tmp_path):
    model = torch.nn.Linear(2, 2)
    saved = {"settings": {"lr": 0.001, "epochs": 5}, "videos": [("a", 1, 2, 3)]}
    now = {"settings": {"lr": 0.0005, "epochs": 5}, "videos": [("a", 1, 2, 3)]}
    path = _checkpoint(tmp_path, model, saved)
    with pytest.raises(CheckpointError, match=r"settings\.lr \(0\.001 in the checkpoint, 0\.0005 now\)"):
        load_checkpoint(path, now, model)
    assert load_checkpoint(path, saved, model)["epoch"] == 1


# ---- the header ----------------------------------------------------------------------------

def test_keyframe_count_matches_the_schedule():
    for clip_len in (2, 3, 8):
        for frames in range(1, 40):
            assert keyframe_count(frames, clip_len) == len(keyframe_indices(frames, clip_len))


def _video(base, **changes):
    videos = [dict(v) for v in base.header["videos"]]
    videos[0].update(changes)
    return videos


HOSTILE_HEADERS = {
    "huge frame count": lambda b: {"videos": _video(b, frames=10**9)},
    "frames as float": lambda b: {"videos": _video(b, frames=6.0)},
    "huge frames": lambda b: {"videos": _video(b, height=10**6)},
    "decoded size over the bound": lambda b: {"videos": _video(b, height=8192, width=8192,
                                                               frames=100_000)},
    "fps null": lambda b: {"videos": _video(b, fps=None)},
    "fps list": lambda b: {"videos": _video(b, fps=[25])},
    "fps 1e308": lambda b: {"videos": _video(b, fps=1e308)},
    "fps zero": lambda b: {"videos": _video(b, fps=0)},
    "name not a string": lambda b: {"videos": _video(b, name=7)},
    "video not an object": lambda b: {"videos": ["a", "b"]},
    "no videos": lambda b: {"videos": []},
    "unknown video field": lambda b: {"videos": _video(b, path="/etc")},
    "huge width config": lambda b: {"config": {**b.header["config"], "fc_dim": 10**6}},
    "negative width": lambda b: {"config": {**b.header["config"], "lower_width": -4}},
    "float width": lambda b: {"config": {**b.header["config"], "encoder_dim": 4.5}},
    "huge levels": lambda b: {"config": {**b.header["config"], "embed_levels": 10**7}},
    "bad patch": lambda b: {"config": {**b.header["config"], "patch_size": [33, 32]}},
    "patch not a list": lambda b: {"config": {**b.header["config"], "patch_size": "32x32"}},
    "huge feature maps": lambda b: {"config": {**b.header["config"], "patch_size": [4096, 4096],
                                               "fc_dim": 512}},
    "config not an object": lambda b: {"config": [1, 2]},
    "unknown config field": lambda b: {"config": {**b.header["config"], "evil": 1}},
    "bits out of range": lambda b: {"bits": 12},
    "bits as string": lambda b: {"bits": "8"},
    "parameters off by one": lambda b: {"parameters": b.header["parameters"] + 1},
    "parameters huge": lambda b: {"parameters": 10**12},
    "version differs": lambda b: {"version": 1},
    "format differs": lambda b: {"format": "other"},
    "codec unknown": lambda b: {"keyframe_codec": "../x"},
    "quality out of range": lambda b: {"keyframe_quality": 1000},
    "prune out of range": lambda b: {"prune": 1.5},
    "unknown field": lambda b: {"exec": "rm -rf"},
    "inpainting not an object": lambda b: {"inpainting": [1]},
    "inpainting huge boxes": lambda b: {"inpainting": {"kind": "boxes", "count": 10**9,
                                                       "size": 4, "seed": 0}},
    "missing bits": lambda b: {"bits": ...},
}


@pytest.mark.parametrize("attack", sorted(HOSTILE_HEADERS))
def test_hostile_headers_end_in_one_error_line(tmp_path, base, capsys, attack):
    path = write(tmp_path / "f.dnerv", with_header(base, **HOSTILE_HEADERS[attack](base)))
    with pytest.raises(BitstreamError):
        pipeline.load(path)
    assert main(["decode", str(path), "-o", str(tmp_path / "out"), "-q"]) == 1
    _one_error_line(capsys, "decode")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.dnerv"]


@pytest.mark.parametrize("text", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b'{"bits": NaN}', b'{"bits": 8, "bits": 8}', b"9" * 10_000,
                                  b"\xff\xfe"])
def test_unreadable_header_text_is_refused(tmp_path, base, text):
    from dnerv_fast.codec import bitstream
    data = bytearray(to_bytes(base))
    table = bitstream._PRELUDE.size
    head_len = bitstream._ENTRY.unpack_from(data, table)[1]
    start = table + 3 * bitstream._ENTRY.size
    body = bytes(data[:table]) + bitstream._ENTRY.pack(b"HEAD", len(text)) + \
        bytes(data[table + bitstream._ENTRY.size:start]) + text + bytes(data[start + head_len:-4])
    path = write(tmp_path / "f.dnerv", body + bitstream._CRC.pack(__import__("zlib").crc32(body)))
    with pytest.raises(BitstreamError, match="header"):
        pipeline.load(path)


def test_only_regular_files_are_read(tmp_path):
    with pytest.raises(BitstreamError, match="not a regular file"):
        pipeline.load("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BitstreamError, match="not a regular file"):
        pipeline.load(tmp_path / "fifo")
    with pytest.raises(BitstreamError, match="Is a directory"):
        pipeline.load(tmp_path)


def test_model_config_bounds():
    for bad in [dict(fc_dim=0), dict(fc_dim=2.5), dict(fc_dim=True), dict(clip_len=1),
                dict(strides=[]), dict(strides=[2] * 9), dict(patch_size=[64]),
                dict(embed_levels=2000), dict(expansion=float("inf")), dict(std=[1, 1, 0]),
                dict(mean=[0.5, 0.5]), dict(expansion=1e-300)]:
        with pytest.raises(ValueError):
            ModelConfig(**{**CONFIGS["tiny"].to_dict(), **bad})
    assert ModelConfig.from_dict(SMALL.to_dict()) == SMALL


# ---- the fuzz test ------------------------------------------------------------------------

def test_fuzz_hostile_files_end_in_an_error_or_a_valid_decode():
    seed = int(os.environ.get("DNERV_FUZZ_SEED", "0"))
    result = subprocess.run([sys.executable, str(HERE / "fuzz_bitstream.py"), "--seed", str(seed),
                             "--cases", "300"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["problems"] == [] and summary["outcomes"]["bug"] == 0, summary["problems"]
    assert summary["outcomes"]["slow"] == 0
    assert summary["outcomes"]["error"] > 100 and summary["outcomes"]["ok"] > 0
    assert summary["growth_mib"] < MAX_FUZZ_GROWTH_MIB, summary


def test_a_full_disk_at_the_end_keeps_the_training_and_says_how_to_finish(tmp_path, clip, capsys,
                                                                         monkeypatch):
    import errno

    out = tmp_path / "x.dnerv"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        assert main(["encode", str(clip), "-o", str(out), "--epochs", "1", "-q"]) == 1
    line = _one_error_line(capsys, "encode")
    assert "No space left on device" in line and "--resume" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dnerv.ckpt"]
    import dnerv_fast.train.trainer as trainer
    monkeypatch.setattr(trainer, "_step", lambda *a, **k: pytest.fail("trained again"))
    assert main(["encode", str(clip), "-o", str(out), "--epochs", "1", "-q", "--resume"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dnerv"]
