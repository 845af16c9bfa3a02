"""YUV sources through the codec: a UVG-named 10-bit raw file of a real clip encoded (with
the UVG protocol's crop), decoded to .yuv / .y4m / a pipe, by frame range, measured in YUV
against an independent NumPy formula, and a version 2 file still decoding."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from dnerv_fast.cli import main
from dnerv_fast.codec.bitstream import read_container, to_bytes
from dnerv_fast.codec.evaluate import evaluate
from dnerv_fast.codec.pipeline import decode, encode, load
from dnerv_fast.media.planar import SourceOptions
from dnerv_fast.media.yuv import YuvFormat
from yuv_clips import CARPHONE, carphone_yuv

FRAMES = 17          # three clips, the last holding one real frame
CROP = "160x128+0+0"  # the UVG protocol's upper-left crop, scaled to carphone
W, H = 160, 128
FMT = YuvFormat("420", 10)


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yuv")
    raw = carphone_yuv(folder, frames=FRAMES, bits=10)
    path = folder / "c.dnerv"
    encode([raw], path, size="tiny", epochs=1, batch_size=8, keyframe_codec="webp",
           keyframe_quality=80, progress=False, source=SourceOptions(crop=CROP))
    return raw, path


def cli(*argv):
    return main([str(a) for a in argv])


def raw_planes(data: bytes, fmt: YuvFormat, w: int, h: int) -> list[list[np.ndarray]]:
    """Frames of a raw file as planes, read with plain NumPy (the reference reader)."""
    words = np.frombuffer(data, fmt.dtype)
    sizes = [(h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2)]
    per = sum(a * b for a, b in sizes)
    out = []
    for f in range(len(words) // per):
        pos, planes = f * per, []
        for a, b in sizes:
            planes.append(words[pos:pos + a * b].reshape(a, b))
            pos += a * b
        out.append(planes)
    return out


def test_header_records_source(coded):
    _, path = coded
    entry = read_container(path).header["videos"][0]
    assert read_container(path).version == 3
    assert (entry["width"], entry["height"], entry["frames"]) == (W, H, FRAMES)
    assert {k: entry[k] for k in ("bit_depth", "chroma", "matrix", "range")} == \
        {"bit_depth": 10, "chroma": "420", "matrix": "bt709", "range": "full"}


def test_decode_writes_10bit_yuv_and_y4m(coded, tmp_path):
    _, path = coded
    [yuv] = decode(path, tmp_path / "out.yuv", progress=False)
    assert yuv.stat().st_size == FRAMES * FMT.frame_bytes(W, H)
    frames = raw_planes(yuv.read_bytes(), FMT, W, H)
    assert max(int(p.max()) for f in frames for p in f) <= 1023
    assert any(int(p.max()) > 255 for p in frames[0])
    [y4m] = decode(path, tmp_path / "out.y4m", progress=False)
    assert b"C420p10" in y4m.read_bytes()[:100]
    with av.open(str(y4m)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
        assert sum(1 for _ in c.decode(video=0)) == FRAMES


def test_frame_ranges_are_bit_identical(coded, tmp_path):
    _, path = coded
    e = load(path)
    full = e.render(0)
    assert np.array_equal(np.stack(list(e.frames(0, 5, 14))), full[5:14])
    deep = e.render(0, depth=16)
    name = e.videos[0].name
    assert np.array_equal(np.stack(list(e.frames(name, -3, None, depth=16))), deep[-3:])
    whole = tmp_path / "all.yuv"
    decode(path, whole, progress=False)
    assert cli("decode", path, "-o", tmp_path / "part.yuv", "--frames", "9:17", "-q") == 0
    per = FMT.frame_bytes(W, H)
    assert (tmp_path / "part.yuv").read_bytes() == whole.read_bytes()[9 * per:17 * per]


def test_y4m_to_stdout_read_by_pyav(coded):
    _, path = coded
    proc = subprocess.run([sys.executable, "-m", "dnerv_fast.cli", "decode", str(path), "-o",
                           "-", "-q", "--frames", "0:4"], capture_output=True, env=os.environ,
                          check=True)
    import io
    with av.open(io.BytesIO(proc.stdout), format="yuv4mpegpipe") as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (W, H)


def test_eval_in_yuv_matches_numpy_to_1e6_db(coded, tmp_path):
    raw, path = coded
    rows = evaluate(path, [raw], crfs=[30], anchors=["x264"], preset="ultrafast",
                    progress=False, source=SourceOptions(crop=CROP))
    mine = [r for r in rows if r.method == "D-NeRV"][0]
    assert mine.colour == "yuv420p10le bt709 full"
    decode(path, tmp_path / "d.yuv", progress=False)
    dec = raw_planes((tmp_path / "d.yuv").read_bytes(), FMT, W, H)
    src = raw_planes(raw.read_bytes(), FMT, 176, 144)
    per_plane = []
    for d, s in zip(dec, src):
        cropped = [s[0][:H, :W], s[1][:H // 2, :W // 2], s[2][:H // 2, :W // 2]]
        mse = [np.mean((a.astype(np.float64) - b) ** 2) for a, b in zip(d, cropped)]
        per_plane.append([10 * np.log10(1023 ** 2 / m) for m in mse])
    y, u, v = np.mean(per_plane, axis=0)
    assert abs(mine.psnr_y - y) < 1e-6 and abs(mine.psnr_u - u) < 1e-6
    assert abs(mine.psnr_v - v) < 1e-6
    assert abs(mine.psnr_yuv - (4 * y + u + v) / 6) < 1e-6
    assert abs(mine.psnr_yuv_611 - (6 * y + u + v) / 8) < 1e-6
    anchor = [r for r in rows if r.method == "x264"][0]
    assert "yuv420p10le" in anchor.setting and np.isfinite(anchor.psnr_yuv)


def test_version_2_file_still_decodes(tmp_path):
    """A version 2 file (today's writer with a version 2 prelude and header, no source
    fields) decodes to the same frames as the same model in a version 3 file."""
    v3 = tmp_path / "v3.dnerv"
    encode([CARPHONE], v3, size="tiny", epochs=1, batch_size=8, max_frames=9,
           keyframe_codec="webp", progress=False)
    c = read_container(v3)
    header = dict(c.header, version=2,
                  videos=[{k: v[k] for k in ("name", "height", "width", "frames", "fps")}
                          for v in c.header["videos"]])
    v2 = tmp_path / "v2.dnerv"
    v2.write_bytes(to_bytes(dataclasses.replace(c, header=header, version=2)))
    assert v2.read_bytes()[8:10] == b"\x02\x00"
    assert np.array_equal(load(v2).render(0), load(v3).render(0))
    assert cli("decode", v2, "-o", tmp_path / "v2.y4m", "-q") == 0
    assert b"C444" in (tmp_path / "v2.y4m").read_bytes()[:80]
