"""The ``dnerv-fast`` entry point: every command is reachable, and the demo runs end to end."""
import subprocess
import sys
from pathlib import Path

import pytest

from dnerv_fast.cli import build_parser, main

COMMANDS = ["info", "backends", "encode", "decode", "eval", "profile", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: dnerv-fast " + command in capsys.readouterr().out


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert sorted(commands) == sorted(COMMANDS)
    for name, command in commands.items():
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    text = " ".join(commands["encode"].format_help().split())
    for shown in ("(default: tiny)", "(default: 100)", "(default: default)", "(default: 8)",
                  "(default: av1)", "(default: auto)"):
        assert shown in text
    assert "(default: [23, 28, 33, 38])" in " ".join(commands["eval"].format_help().split())


def test_help_does_not_import_torch():
    code = ("import sys; from dnerv_fast.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules and 'av' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'av')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_info_describes_a_file_without_decoding(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hostile_files import small_container
    from dnerv_fast.codec.bitstream import to_bytes
    path = tmp_path / "f.dnerv"
    path.write_bytes(to_bytes(small_container()))
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"format version 3, {path.stat().st_size} bytes" in out
    assert "46784 parameters at 6 bits" in out and "40x36" in out and "weights" in out
    assert "bits per parameter (46,784 parameters at 6 bits; tensors by mode:" in out
    assert main(["info", str(path), "--tensors"]) == 0
    rows = capsys.readouterr().out.split("bits/param\n")[1].splitlines()
    assert len(rows) == 50 and rows[0].split()[:3] == ["stem.mlp.0.weight", "512x16x1", "8,192"]
    assert main(["info"]) == 0 and "uvg-XL" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.dnerv")]) == 1


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "dnerv_fast.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)


def test_demo_end_to_end_and_refuses_existing_workdir(tmp_path, capsys):
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--frames", "9", "--epochs", "1", "-q"]) == 0
    out = capsys.readouterr().out
    assert "4/4 rate-distortion" in out and "x265" in out
    assert sorted(p.name for p in work.iterdir()) == ["decoded", "demo.dnerv", "rd.csv", "rd.png",
                                                      "videos"]
    assert sorted(p.name for p in (work / "videos").iterdir()) == ["fields.mp4", "pan.mp4",
                                                                   "squares.mp4"]
    assert "bpp (target 1)" in out and "of raw" in out
    assert (work / "rd.png").read_bytes().startswith(b"\x89PNG")
    assert main(["demo", "--workdir", str(work)]) == 1
    assert "already exists" in capsys.readouterr().err
    (work / "notes.txt").write_text("mine")
    assert main(["demo", "--workdir", str(work), "--frames", "9", "--epochs", "1", "-q",
                 "--overwrite"]) == 0
    assert (work / "notes.txt").read_text() == "mine"          # --overwrite replaces only its own
    assert sorted(p.name for p in work.iterdir()) == ["decoded", "demo.dnerv", "notes.txt",
                                                      "rd.csv", "rd.png", "videos"]
