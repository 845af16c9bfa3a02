"""Source rewrite that lets g++ compile the CUDA translation units against cuda_harness.h.

Only two constructs change, both mechanically and checked: the launch syntax
``kernel<<<grid, block, smem, stream>>>(args)`` becomes
``::cuda_harness::launch(kernel, ::cuda_harness::LaunchConfig(grid, block, smem, stream), args)``,
and ``__shared__ T name[N]...;`` becomes a reference to the block's storage of that
declaration (``T (&name)[N]... = ::cuda_harness::shared<T[N]...>();``). Everything else
(indexing, barriers, shuffles, atomics, launch geometry) is the file as written.
"""
from __future__ import annotations

import re
from pathlib import Path

LAUNCH = re.compile(r"(?P<kernel>[A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(?P<cfg>.*?)>>>\s*\((?P<empty>\s*\))?", re.S)
SHARED = re.compile(r"__shared__\s+(?P<type>[\w:<>, ]+?)\s+(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]+\])*)\s*;")
HEADER = '#include "cuda_harness.h"\n'


class RewriteError(ValueError):
    """A construct the rewrite does not handle (the harness would not run the file as written)."""


def rewrite(text: str, name: str = "<source>") -> str:
    """``text`` of a .cu / .cuh file as the harness compiles it."""
    if "extern __shared__" in text:
        raise RewriteError(f"{name}: dynamic shared memory is not emulated")
    out, launches = LAUNCH.subn(
        lambda m: f"::cuda_harness::launch({m['kernel']}, ::cuda_harness::LaunchConfig({m['cfg']})"
                  + (")" if m["empty"] else ", "), text)
    out, shared = SHARED.subn(
        lambda m: f"{m['type']} (&{m['name']}){m['dims']} = ::cuda_harness::shared<{m['type']}{m['dims']}>();", out)
    if "<<<" in out or "__shared__" in out:
        raise RewriteError(f"{name}: a launch or __shared__ declaration the rewrite did not match")
    return (HEADER + out) if (launches or shared or name.endswith(".cu")) else out


def rewrite_tree(src: Path, dst: Path) -> list[Path]:
    """Writes the rewritten .cu files of ``src`` to ``dst`` as ``NAME.cu.cpp`` and copies its
    headers (rewritten too) unchanged in name; returns the translation units. Files are only
    written when their text changes, so incremental builds stay incremental."""
    dst.mkdir(parents=True, exist_ok=True)
    units = []
    for path in sorted(src.iterdir()):
        if path.suffix not in (".cu", ".cuh", ".h"):
            continue
        text = rewrite(path.read_text(), path.name) if path.suffix != ".h" else path.read_text()
        target = dst / (path.name + ".cpp" if path.suffix == ".cu" else path.name)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        if path.suffix == ".cu":
            units.append(target)
    return units
