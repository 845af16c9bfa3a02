"""README.md and docs/*.md hold together: every relative link and anchor resolves, and every
code block either runs or is marked as something that is not run (docs/README.md states the
rule: ```python runs; ```console is a shell transcript; ```text is output or a layout)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.S | re.M)
# Fence labels and what the test does with them. Python blocks of docs/ pages run here; the
# README's run in tests/test_readme.py, in its own order.
RUN, NOT_RUN = {"python"}, {"console", "text"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _ids(page: Path) -> str:
    return str(page.relative_to(ROOT))


def prose(text: str) -> str:
    """``text`` without its fenced blocks and inline code, where links are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\*|_(?=\w)|(?<=\w)_", "", heading)       # markup, not words
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)              # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor ``page`` defines: its headings (numbered as GitHub numbers repeats) and
    explicit ``<a id>`` tags."""
    text = page.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    out = set(EXPLICIT_ANCHOR.findall(text))
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def test_slug_follows_github():
    assert slug("Rate and distortion on real video") == "rate-and-distortion-on-real-video"
    assert slug("`dnerv-fast encode`: the options") == "dnerv-fast-encode-the-options"
    assert slug("Files from strangers, and your folders") == "files-from-strangers-and-your-folders"


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_relative_links_and_anchors_resolve(page: Path):
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):            # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading or <a id> {anchor!r} in {file.name}")
    assert not broken, f"{_ids(page)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_every_code_block_is_labelled(page: Path):
    labels = [m.group(1).strip() for m in FENCE.finditer(page.read_text(encoding="utf-8"))]
    wrong = [label or "(none)" for label in labels if label not in RUN | NOT_RUN]
    assert not wrong, (f"{_ids(page)}: code blocks labelled {wrong}; use ```python (run by the "
                       "tests), ```console (a shell transcript) or ```text (see docs/README.md)")


DOC_PAGES = [p for p in PAGES if p.parent.name == "docs"
             and any(m.group(1).strip() in RUN
                     for m in FENCE.finditer(p.read_text(encoding="utf-8")))]


@pytest.mark.parametrize("page", DOC_PAGES, ids=_ids)
def test_python_blocks_of_docs_pages_run(page: Path, tmp_path: Path):
    blocks = [m.group(2) for m in FENCE.finditer(page.read_text(encoding="utf-8"))
              if m.group(1).strip() == "python"]
    script = "\n".join(f"# --- {page.name} block {i + 1}\n{b}" for i, b in enumerate(blocks))
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
