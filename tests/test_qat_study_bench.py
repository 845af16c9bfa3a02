"""benches/qat_study.py end to end on a generated clip: the pipeline of the study, not its figures."""
import importlib.util
import json
import pathlib

import pytest

from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.media.video_io import write_video

_PATH = pathlib.Path(__file__).parents[1] / "benches" / "qat_study.py"
_SPEC = importlib.util.spec_from_file_location("qat_study", _PATH)
qat_study = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(qat_study)


@pytest.mark.slow
def test_study_measures_float_ptq_and_qat(tmp_path):
    clip = write_video(moving_pattern(8, 64, 64).frames, tmp_path / "clip.mp4")
    out = tmp_path / "study"
    assert qat_study.main([str(clip), "--out", str(out), "--frames", "8", "--epochs", "3",
                           "--target-bpp", "12", "--bits", "5"]) == 0
    rows = json.loads((out / "qat.json").read_text())["rows"]
    assert [r["bits"] for r in rows] == [5]
    r = rows[0]
    assert r["qat_loss_db"] == pytest.approx(r["float_psnr"] - r["qat_psnr"])
    assert 0 < r["qat_bits_per_parameter"] < 8 and r["ptq_bpp"] > 0 and r["qat_bpp"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["ptq-5.dnerv", "qat-5.dnerv", "qat.json",
                                                     "qat.md"]                 # no checkpoint left
    assert "| 5 |" in (out / "qat.md").read_text()
