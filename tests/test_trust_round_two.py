"""Trust, round two (issue 27): no program run by an image, one run per output, memory
bounded by content, no internal error from input, safe printing, pipes, conformance."""
from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import numpy as np
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
