"""pyproject.toml is the one home of the metadata: version from the package, kernel sources
shipped, the entry point and the lint rules stated there."""
import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metadata_lives_in_pyproject_with_one_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert not (ROOT / "setup.py").exists() and not (ROOT / "setup.cfg").exists()
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    tool = project["tool"]
    assert tool["setuptools"]["dynamic"]["version"] == {"attr": "dnerv_fast.__version__"}
    assert project["project"]["scripts"]["dnerv-fast"] == "dnerv_fast.cli:main"
    assert tool["ruff"]["lint"]["select"], "the lint rule set is stated"
    assert "\nruff check .\n" in (ROOT / ".ci" / "run").read_text(), "CI runs the linter"


def test_every_kernel_source_ships_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["dnerv_fast.csrc"]
    for path in (ROOT / "dnerv_fast" / "csrc").iterdir():
        if path.suffix in (".h", ".cpp", ".cu", ".cuh"):
            assert any(fnmatch.fnmatch(path.name, p) for p in patterns), path.name
