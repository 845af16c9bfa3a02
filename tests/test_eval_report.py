"""Eval reports: the MS-SSIM variant in every row and output, CompressAI-shaped JSON."""
from __future__ import annotations

import csv
import json
import math

import pytest

from dnerv_fast.errors import OutputExistsError
from dnerv_fast.codec.evaluate import Row
from dnerv_fast.codec.report import (PADDED_NOTE, compressai_results, format_table, json_path,
                                     write_csv, write_json)

PAD, STD = "reflect-pad-161", "standard"
ROWS = [
    Row("D-NeRV", "tiny 8bit", "clip", 9, 0.5, 30.0, 0.95, PAD),
    Row("D-NeRV", "tiny 8bit", "ALL", 9, 0.5, 30.0, 0.95, PAD),
    Row("holes", "tiny 8bit", "ALL", 9, 0.5, 20.0, math.nan, ""),
    Row("x264", "crf 38 medium yuv444p", "ALL", 9, 0.1, 28.0, 0.90, PAD),
    Row("x264", "crf 23 medium yuv444p", "ALL", 9, 0.9, 38.0, 0.99, PAD),
    Row("x265", "crf 23 medium yuv444p", "ALL", 9, 0.7, math.inf, 0.99, PAD),
]


def _compressai_curve(path, metric):
    """What compressai.utils.plot reads of a results file (its parse_json_file)."""
    data = json.loads(path.read_text())
    results = data["results"]
    return data["name"], results["bpp"], results[metric]


def test_table_and_csv_name_the_variant(tmp_path):
    table = format_table(ROWS)
    assert table.splitlines()[0].split()[-1] == "variant"
    holes = next(line for line in table.splitlines() if line.startswith("holes"))
    assert table.splitlines()[2].endswith(PAD) and holes.endswith(" -")
    assert table.splitlines()[-1] == PADDED_NOTE and "161 px" in PADDED_NOTE
    assert PADDED_NOTE not in format_table([Row("x264", "s", "ALL", 1, 1.0, 1.0, 1.0, STD)])
    write_csv(ROWS, tmp_path / "rd.csv")
    rows = list(csv.DictReader((tmp_path / "rd.csv").open()))
    assert [r["ms_ssim_variant"] for r in rows] == [PAD, PAD, "", PAD, PAD, PAD]


def test_a_single_video_is_not_shown_twice():
    lines = format_table(ROWS).splitlines()[2:]
    assert sum("D-NeRV" in line for line in lines) == 1 and " clip " in lines[0]
    assert sum("x264" in line for line in lines) == 2 and sum("holes" in line for line in lines) == 1


def test_compressai_results_shape():
    results = compressai_results(ROWS)
    assert list(results) == ["D-NeRV", "x264", "x265"]             # no region rows, no videos
    x264 = results["x264"]
    assert set(x264) == {"name", "description", "ms-ssim-variant", "colour", "results"}
    assert x264["name"] == "x264" and x264["ms-ssim-variant"] == PAD
    nothing = [None, None]                                          # rows without YUV figures
    assert x264["results"] == {"bpp": [0.1, 0.9], "psnr-rgb": [28.0, 38.0],
                               "ms-ssim-rgb": [0.90, 0.99], "psnr-y": nothing,
                               "psnr-u": nothing, "psnr-v": nothing, "psnr-yuv": nothing,
                               "psnr-yuv-mse411": nothing, "psnr-yuv-611": nothing}  # by rate
    assert "(4Y+U+V)/6 as CompressAI" in x264["description"]
    assert "crf 38" in x264["description"] and PAD in x264["description"]
    assert results["x265"]["results"]["psnr-rgb"] == [None]         # JSON has no infinity


def test_write_json_one_file_per_codec_read_as_compressai_does(tmp_path):
    folder = tmp_path / "rd"
    paths = write_json(ROWS, folder)
    assert paths == [folder / "dnerv.json", folder / "x264.json", folder / "x265.json"]
    assert json_path(folder, "D-NeRV") == paths[0]
    assert _compressai_curve(paths[1], "psnr-rgb") == ("x264", [0.1, 0.9], [28.0, 38.0])
    assert _compressai_curve(paths[0], "ms-ssim-rgb") == ("D-NeRV", [0.5], [0.95])
    before = paths[0].read_bytes()
    with pytest.raises(OutputExistsError):
        write_json(ROWS[:2], folder)
    assert paths[0].read_bytes() == before
    write_json(ROWS[:2], folder, overwrite=True)
    assert json.loads(paths[0].read_text())["results"]["bpp"] == [0.5]
    assert sorted(p.name for p in folder.iterdir()) == ["dnerv.json", "x264.json", "x265.json"]
