"""The ``dnerv-fast`` entry point: every command is reachable, and the demo runs end to end."""
import subprocess
import sys

import pytest

from dnerv_fast.cli import build_parser, main

COMMANDS = ["info", "backends", "encode", "decode", "eval", "profile", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: dnerv-fast " + command in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "dnerv_fast.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)


def test_demo_end_to_end_and_refuses_existing_workdir(tmp_path, capsys):
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--frames", "9", "--epochs", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "4/4 rate-distortion" in out and "x265" in out
    assert sorted(p.name for p in work.iterdir()) == ["decoded", "demo.dnerv", "demo.mp4", "rd.csv", "rd.png"]
    assert (work / "rd.png").read_bytes().startswith(b"\x89PNG")
    assert main(["demo", "--workdir", str(work)]) == 1
    assert "already exists" in capsys.readouterr().err
    (work / "notes.txt").write_text("mine")
    assert main(["demo", "--workdir", str(work), "--frames", "9", "--epochs", "1", "-q",
                 "--overwrite"]) == 0
    assert (work / "notes.txt").read_text() == "mine"          # --overwrite replaces only its own
    assert sorted(p.name for p in work.iterdir()) == ["decoded", "demo.dnerv", "demo.mp4",
                                                      "notes.txt", "rd.csv", "rd.png"]
