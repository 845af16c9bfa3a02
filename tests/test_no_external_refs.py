"""Code, tests, benches and help cite nothing a reader of the repository cannot open: no
specification file or issue tracker numbers that live elsewhere. Facts from the paper cite
the paper (a section, an equation, or its published reference code)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("dnerv_fast", "tests", "benches", "examples", "tools", ".ci")
SUFFIXES = {".py", ".cpp", ".cu", ".cuh", ".h", ".toml", ".cfg", ""}
# Built from parts so that this file does not match itself.
FORBIDDEN = re.compile(r"\b" + "SP" + r"EC\b|\b" + "[Ii]ss" + r"ues? #?\d+")


def _files():
    yield ROOT / "pyproject.toml"
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                yield path


def test_no_reference_outside_the_repository():
    found = []
    for path in _files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                      .splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "cite the paper or say it in full instead:\n" + "\n".join(found)


def test_the_pattern_catches_what_it_should():
    assert FORBIDDEN.search("the paper's loss (" + "SP" + "EC section 3)")
    assert FORBIDDEN.search("see " + "is" + "sue 12, defect 1")
    assert not FORBIDDEN.search("_SPEC = importlib.util.spec_from_file_location")
