"""Bad raw YUV and Y4M input on the command line: one ``error:`` line, exit 1, nothing
written or removed (the cases of tests/test_trust.py, for YUV sources)."""
from __future__ import annotations

import pytest

from dnerv_fast.cli import main
from dnerv_fast.media.yuv import YuvFormat

FRAME = YuvFormat().frame_bytes(64, 48)


def _cases(tmp_path):
    good = bytes(range(256)) * (3 * FRAME // 256)
    cases = {
        "wrong size": ("clip_64x48_420_8bit.yuv", good + b"\0" * 7, []),
        "truncated": ("clip_64x48_30fps_420_8bit_YUV.yuv", good[:-100], []),
        "zero frames": ("clip_64x48.yuv", b"", []),
        "name and options disagree": ("clip_64x48.yuv", good, ["--yuv-size", "32x32"]),
        "name and format disagree": ("clip_64x48_8bit.yuv", good, ["--yuv-format",
                                                                   "yuv420p10le"]),
        "unsupported pixel format": ("clip_64x48.yuv", good, ["--yuv-format", "nv12"]),
        "no size": ("clip.yuv", good, []),
        "crop outside": ("clip_64x48.yuv", good, ["--crop", "64x48+2+0"]),
        "y4m truncated": ("c.y4m", b"YUV4MPEG2 W64 H48 F25:1 C420jpeg\nFRAME\n" + good[:100], []),
        "y4m colour space": ("c.y4m", b"YUV4MPEG2 W64 H48 F25:1 C411\nFRAME\n" + good, []),
        "y4m no frames": ("c.y4m", b"YUV4MPEG2 W64 H48 F25:1 C420jpeg\n", []),
        "10-bit samples too large": ("clip_64x48_10bit.yuv", b"\xff" * (2 * FRAME), []),
    }
    return cases


CASES = list(_cases(None))


@pytest.mark.parametrize("case", CASES)
def test_bad_yuv_input_one_error_line_nothing_touched(tmp_path, capsys, case):
    name, data, options = _cases(tmp_path)[case]
    src = tmp_path / name
    src.write_bytes(data)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out.dnerv"
    code = main(["encode", str(src), "-o", str(out), "--epochs", "1", "-q", *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    assert len(err) == 1 and err[0].startswith("dnerv-fast encode: error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert src.read_bytes() == data


def test_bad_eval_source_one_error_line(tmp_path, capsys):
    src = tmp_path / "clip_64x48.yuv"
    src.write_bytes(b"\0" * (FRAME + 1))
    dnerv = tmp_path / "x.dnerv"
    dnerv.write_bytes(b"not a dnerv file")
    code = main(["eval", str(dnerv), str(src), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "error:" in err[0]


@pytest.mark.parametrize("frames", ["5", "a:b", "1:2:3"])
def test_bad_frame_range_is_refused_before_reading(tmp_path, capsys, frames):
    dnerv = tmp_path / "x.dnerv"
    dnerv.write_bytes(b"not a dnerv file")
    code = main(["decode", str(dnerv), "-o", str(tmp_path / "o.yuv"), "--frames", frames, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "frame range is START:STOP" in err[0]
    assert not (tmp_path / "o.yuv").exists()


def test_output_extension_and_format_disagree(tmp_path, capsys):
    dnerv = tmp_path / "x.dnerv"
    dnerv.write_bytes(b"not a dnerv file")
    code = main(["decode", str(dnerv), "-o", str(tmp_path / "o.yuv"), "--format", "png", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "is yuv but the format asked for is png" in err[0]
