"""docs/usage.md is generated from the option definitions and is current."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_usage_page_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_usage_doc.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + " (run: python tools/make_usage_doc.py)"
