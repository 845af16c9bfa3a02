"""Raw YUV and Y4M: layouts from names and options, memory-mapped reading, colour
conversion, Y4M tags, and PyAV (FFmpeg) agreeing with what is written."""
from __future__ import annotations

import av
import numpy as np
import pytest

from dnerv_fast.errors import VideoReadError
from dnerv_fast.media.planar import SourceOptions, open_planar, to_rgb8
from dnerv_fast.media.video_io import read_video
from dnerv_fast.media.y4m import Y4mFile, Y4mWriter, parse_header
from dnerv_fast.media.yuv import (Crop, YuvFormat, YuvLayout, name_fields, resolve_layout,
                                  rgb_to_yuv, yuv_to_rgb)
from yuv_clips import CARPHONE, carphone_planes, carphone_yuv, planes_of


@pytest.mark.parametrize("name, expected", [
    ("Beauty_1920x1080_120fps_420_8bit_YUV.yuv",
     {"size": (1920, 1080), "fps": 120.0, "chroma": "420", "bit_depth": 8}),
    ("ShakeNDry_3840x2160_30fps_422_10bit_YUV.yuv",
     {"size": (3840, 2160), "fps": 30.0, "chroma": "422", "bit_depth": 10}),
    ("BasketballDrive_1920x1080_50.yuv", {"size": (1920, 1080), "fps": 50.0}),
    ("clip_352x288_yuv444p16le.yuv", {"size": (352, 288), "chroma": "444", "bit_depth": 16}),
    ("mono-64x48-gray10le.yuv", {"size": (64, 48), "chroma": "400", "bit_depth": 10}),
    ("foo.yuv", {}),
])
def test_name_conventions(name, expected):
    assert name_fields(name) == expected


def test_options_fill_in_and_disagreement_is_an_error():
    lay = resolve_layout("x_64x48.yuv", pix_fmt="yuv422p10le", fps=60)
    assert (lay.width, lay.height, lay.format, lay.fps) == (64, 48, YuvFormat("422", 10), 60.0)
    with pytest.raises(VideoReadError, match="name says size 64x48 but --yuv-size says 32x32"):
        resolve_layout("x_64x48.yuv", size="32x32")
    with pytest.raises(VideoReadError, match="bit_depth 8 but --yuv-format"):
        resolve_layout("x_64x48_8bit.yuv", pix_fmt="yuv420p10le")
    with pytest.raises(VideoReadError, match="needs its frame size"):
        resolve_layout("x.yuv")
    for bad in ("nv12", "yuv420p10be", "rgb24", "yuv411p"):
        with pytest.raises(VideoReadError, match="unsupported pixel format"):
            YuvFormat.parse(bad)


@pytest.mark.parametrize("chroma", ["400", "420", "422", "444"])
@pytest.mark.parametrize("bits", [8, 10, 16])
def test_raw_read_every_layout_frame_by_frame(tmp_path, chroma, bits):
    fmt = YuvFormat(chroma, bits)
    w, h, n = 10, 6, 3
    rng = np.random.default_rng(bits)
    frames = [[rng.integers(0, fmt.peak + 1, s).astype(fmt.dtype) for s in fmt.plane_shapes(w, h)]
              for _ in range(n)]
    path = tmp_path / f"t_{w}x{h}_{fmt.pix_fmt}.yuv"
    path.write_bytes(b"".join(p.tobytes() for f in frames for p in f))
    src = open_planar(path)
    assert src.count == n and src.format == fmt
    assert isinstance(src.reader._map, np.memmap)
    for i in range(n):
        for a, b in zip(src.planes(i), frames[i]):
            np.testing.assert_array_equal(a, b)


def test_bad_raw_files(tmp_path):
    good = YuvFormat().frame_bytes(8, 8)
    (tmp_path / "a_8x8.yuv").write_bytes(b"\0" * (2 * good + 5))
    with pytest.raises(VideoReadError, match=r"not a whole number .* \(2 frames and 5 bytes"):
        open_planar(tmp_path / "a_8x8.yuv")
    (tmp_path / "b_8x8.yuv").write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty"):
        open_planar(tmp_path / "b_8x8.yuv")
    (tmp_path / "c_8x8_10bit.yuv").write_bytes(b"\xff" * YuvFormat("420", 10).frame_bytes(8, 8))
    with pytest.raises(VideoReadError, match="above 1023"):
        open_planar(tmp_path / "c_8x8_10bit.yuv").planes(0)


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("rng_", ["full", "limited"])
def test_colour_round_trip(matrix, rng_):
    rng = np.random.default_rng(1)
    rgb = rng.random((6, 8, 3))
    fmt = YuvFormat("444", 16)
    back = yuv_to_rgb(rgb_to_yuv(rgb, fmt, matrix, rng_), fmt, matrix, rng_)
    assert np.abs(back - rgb).max() < 3e-4


def test_8bit_yuv_matches_ffmpeg_rgb(tmp_path):
    """carphone as raw 4:2:0, BT.601 limited range, against FFmpeg's RGB of the same clip:
    the two differ only where FFmpeg interpolates chroma (we repeat it)."""
    path = carphone_yuv(tmp_path, frames=2)
    ours = read_video(path, options=SourceOptions(matrix="bt601", range="limited"))
    ref = read_video(CARPHONE, max_frames=2)
    diff = np.abs(to_rgb8(ours.frames).astype(int) - ref.frames)
    assert diff.mean() < 1.5 and diff.max() <= 4


def test_10bit_trained_values_are_not_8bit(tmp_path):
    v = read_video(carphone_yuv(tmp_path, frames=2, bits=10))
    assert v.frames.dtype == np.uint16
    assert (v.frames % 257 != 0).mean() > 0.5      # not 8-bit values scaled up


def test_crop(tmp_path):
    path = carphone_yuv(tmp_path, frames=2)
    full = read_video(path)
    part = read_video(path, options=SourceOptions(crop="96x64+16+32"))
    np.testing.assert_array_equal(part.frames, full.frames[:, 32:96, 16:112])
    with pytest.raises(VideoReadError, match="multiples of 2"):
        read_video(path, options=SourceOptions(crop="95x64+0+0"))
    with pytest.raises(VideoReadError, match="leaves"):
        read_video(path, options=SourceOptions(crop="176x144+2+0"))


@pytest.mark.parametrize("pix_fmt, tag", [("yuv420p", "C420mpeg2"), ("yuv420p10le", "C420p10"),
                                          ("yuv444p", "C444"), ("yuv422p10le", "C422p10")])
def test_y4m_written_is_read_by_ffmpeg_and_us(tmp_path, pix_fmt, tag):
    fmt = YuvFormat.parse(pix_fmt)
    frames = carphone_planes(3, pix_fmt)
    path = tmp_path / "c.y4m"
    with open(path, "wb") as f:
        w = Y4mWriter(f, YuvLayout(176, 144, fmt, 30.0), "limited",
                      "420mpeg2" if pix_fmt == "yuv420p" else None)
        for planes in frames:
            w.write(planes)
    head = path.read_bytes().split(b"\n")[0].decode()
    assert tag in head and "XCOLORRANGE=LIMITED" in head
    ours = Y4mFile(path)
    assert (len(ours), ours.layout.format, ours.info.range) == (3, fmt, "limited")
    assert ours.info.siting == ("420mpeg2" if pix_fmt == "yuv420p" else None)
    with av.open(str(path)) as c:
        decoded = [planes_of(fr, pix_fmt) for fr in c.decode(video=0)]
        assert c.streams.video[0].codec_context.pix_fmt == pix_fmt
    assert len(decoded) == 3
    for i in range(3):
        for a, b, c_ in zip(ours.frame(i), frames[i], decoded[i]):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(c_, b)


def test_y4m_header_errors(tmp_path):
    with pytest.raises(VideoReadError, match="not a Y4M"):
        parse_header(b"YUV4MPEG W2 H2", "x")
    with pytest.raises(VideoReadError, match="unsupported Y4M colour space"):
        parse_header(b"YUV4MPEG2 W2 H2 C411", "x")
    path = tmp_path / "t.y4m"
    path.write_bytes(b"YUV4MPEG2 W4 H4 F25:1 C420jpeg\nFRAME\n" + b"\0" * 10)
    with pytest.raises(VideoReadError, match="truncated"):
        Y4mFile(path)
    path.write_bytes(b"YUV4MPEG2 W4 H4 F25:1 C420jpeg\n")
    with pytest.raises(VideoReadError, match="no frames"):
        Y4mFile(path)


def test_crop_parse():
    assert Crop.parse("1920x1024+0+0") == Crop(1920, 1024, 0, 0)
    assert Crop.parse("64x32") == Crop(64, 32, 0, 0)
    with pytest.raises(VideoReadError):
        Crop.parse("64x")
