"""x264/x265 anchors: what is counted is what decodes, less the encoders' text banners."""
import numpy as np
import pytest

from dnerv_fast.codec.anchors import PIX_FMTS, encode_anchor, without_sei
from dnerv_fast.errors import CodecError
from dnerv_fast.media.synthetic import moving_pattern


@pytest.fixture(scope="module")
def frames():
    return moving_pattern(6, 48, 62).frames


def test_sei_units_go_and_picture_units_stay():
    sei, picture = b"\x06\x05\x10" + b"x264 - core" + b"\x80", b"\x65\x88\x84\x21"
    data = b"\x00\x00\x00\x01" + sei + b"\x00\x00\x00\x01" + picture
    assert without_sei(data, "x264") == b"\x00\x00\x01" + picture
    hevc_sei, hevc_slice = b"\x4e\x01\x05\x10banner\x80", b"\x26\x01\xaf\x10"
    assert without_sei(b"\x00\x00\x01" + hevc_sei + b"\x00\x00\x01" + hevc_slice, "x265") == \
        b"\x00\x00\x01" + hevc_slice


@pytest.mark.parametrize("anchor", ["x264", "x265"])
@pytest.mark.parametrize("pix_fmt", PIX_FMTS)
def test_anchor_files_decode_without_their_banner(frames, anchor, pix_fmt):
    result = encode_anchor(frames, anchor, 30, pix_fmt=pix_fmt)
    assert result.frames.shape == frames.shape and result.frames.dtype == np.uint8
    mse = np.mean((result.frames.astype(float) - frames) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 25
    # 6 frames of 62x48 at CRF 30: a banner (0.7-2.3 kB of text) would dominate the file.
    assert result.bytes < 3000


def test_unknown_pixel_format_is_refused(frames):
    with pytest.raises(CodecError, match="pixel format"):
        encode_anchor(frames, "x264", 30, pix_fmt="rgb24")
