"""The results tables in README.md and docs/ equal what their data files give
(benches/make_tables.py), and benches/results.py records the provenance every table names."""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parents[1] / "benches"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_tables = _module("make_tables")
results = _module("results")


def test_tables_equal_their_data(capsys):
    assert make_tables.main(["--check"]) == 0, (
        capsys.readouterr().out + "run: python benches/make_tables.py")


def test_every_data_file_names_command_date_machine_and_commit():
    files = sorted(make_tables.RESULTS_DIR.glob("*.json"))
    assert files
    for path in files:
        d = json.loads(path.read_text())
        assert {"command", "date", "machine", "commit"} <= d.keys(), path.name
        assert {"cpu", "cores", "torch"} <= d["machine"].keys(), path.name
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", d["commit"]), path.name


def test_every_table_marker_is_known():
    for page in make_tables.PAGES:
        for m in make_tables.BLOCK.finditer(page.read_text()):
            name = m.group(2)
            assert name in make_tables.TABLES, f"{page.name}: unknown table {name}"


def test_a_table_without_data_says_how_to_measure_it(tmp_path, monkeypatch):
    monkeypatch.setattr(make_tables, "RESULTS_DIR", tmp_path)
    text = make_tables.render("decode_speed", make_tables.ROOT / "README.md")
    assert text.startswith("Not measured yet") and "DNERV_BENCH_RECORD=1" in text


def test_a_hand_edited_table_is_caught(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    name = next(iter(n for n, (s, _, _) in make_tables.TABLES.items()
                     if (make_tables.RESULTS_DIR / f"{s}.json").is_file()))
    good = f"text\n<!-- results:{name} -->\n<!-- /results -->\n"
    page.write_text(good)
    monkeypatch.setattr(make_tables, "PAGES", [page])
    assert make_tables.main([]) == 0                     # fills the block in
    filled = page.read_text()
    assert filled != good and make_tables.main(["--check"]) == 0
    page.write_text(filled.replace("|", "| 1.0", 1))      # a figure changed by hand
    assert make_tables.main(["--check"]) == 1


def test_record_writes_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv(results.NOTE_ENV, "machine shared with other jobs")
    path = results.record("demo_result", {"figure": 1.5}, "python benches/x.py --y",
                          directory=tmp_path)
    d = json.loads(path.read_text())
    assert d["figure"] == 1.5 and d["command"] == "python benches/x.py --y"
    assert d["note"] == "machine shared with other jobs"
    assert d["machine"]["cores"] >= 1 and d["machine"]["torch"]
    assert [p.name for p in tmp_path.iterdir()] == ["demo_result.json"]     # no temporary left
    with pytest.raises(ValueError):
        results.record("../escape", {}, "x", directory=tmp_path)


def test_command_line_quotes_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x", "a b.mp4", "--out", "o"])
    assert results.command_line("benches/x.py") == "python benches/x.py 'a b.mp4' --out o"
