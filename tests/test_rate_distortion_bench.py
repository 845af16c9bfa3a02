"""benches/rate_distortion.py's reading of the curves: PSNR at a rate, rate at a PSNR, crossings."""
import importlib.util
import pathlib

import pytest

from dnerv_fast.codec.evaluate import DNERV, Row

_PATH = pathlib.Path(__file__).parents[1] / "benches" / "rate_distortion.py"
_SPEC = importlib.util.spec_from_file_location("rate_distortion", _PATH)
rd = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(rd)


def _curve(method, points):
    return [Row(method, f"p{i}", "ALL", 10, bpp, psnr, 0.9, "") for i, (bpp, psnr) in
            enumerate(points)]


def test_psnr_and_rate_are_read_on_log_rate():
    anchor = _curve("x264", [(0.01, 20.0), (0.1, 30.0), (1.0, 40.0)])
    assert rd.psnr_at(anchor, 0.1) == pytest.approx(30.0)
    assert rd.psnr_at(anchor, 10 ** -1.5) == pytest.approx(25.0)
    assert rd.psnr_at(anchor, 2.0) is None
    assert rd.bpp_at(anchor, 35.0) == pytest.approx(10 ** -0.5)
    assert rd.bpp_at(anchor, 19.0) is None
    assert rd.bpp_at(_curve("x", [(0.1, 30.0), (0.2, 29.0)]), 29.5) is None   # not rising


def test_comparison_gives_gaps_rate_ratios_and_crossings():
    anchor = _curve("x264", [(0.01, 20.0), (0.1, 30.0), (1.0, 40.0)])
    dnerv = _curve(DNERV, [(0.01, 24.0), (1.0, 36.0)])              # better low, worse high
    compared = rd.comparison(anchor + dnerv)
    low, high, cross = compared
    assert low["gap_db"] == pytest.approx(4.0) and high["gap_db"] == pytest.approx(-4.0)
    assert low["anchor_bpp_at_psnr"] == pytest.approx(10 ** -1.6)
    assert high["rate_ratio"] == pytest.approx(1.0 / 10 ** -0.4)
    assert cross["crossings_bpp"] == [pytest.approx(0.1, rel=0.02)]
    text = rd.report(anchor + dnerv, [], compared, "cmd")
    assert "| x264 | 1.0000 | 36.00 | 40.00 | -4.00 | 0.3981 | 2.5x |" in text


def test_crossings_survive_rounding_at_the_common_range_ends():
    """exp(log(0.0971)) is just under 0.0971: the grid's first rate fell outside the curve
    starting there (a full bikes run ended in a TypeError after its last encode)."""
    dnerv = _curve(DNERV, [(0.0971, 24.25), (0.2718, 25.70), (0.8447, 26.25)])
    anchor = _curve("x264", [(0.02, 24.0), (0.3, 38.0), (1.2, 42.0)])
    assert rd.crossings(dnerv, anchor) == []                 # D-NeRV below it throughout
