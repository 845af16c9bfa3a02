"""The README's Python blocks run as written, in order, in a fresh folder; the README stays a
landing page (at most 250 lines) whose first lines are the two set-up commands."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_python_blocks_run(tmp_path):
    blocks = python_blocks()
    assert len(blocks) >= 3
    script = "\n".join(f"# --- README block {i + 1}\n{b}" for i, b in enumerate(blocks))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "decoded" / "clip.mp4").is_file()


def test_readme_is_short_and_starts_with_the_set_up_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    head = "\n".join(lines[:8])
    assert "pip install . && dnerv-fast demo" in head
    assert 'pip install -e ".[test]" && pytest tests/' in head
