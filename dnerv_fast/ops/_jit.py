"""Build the C++/CUDA extensions on first use (ninja via torch.utils.cpp_extension.load).

Sources live in the installed package ``dnerv_fast.csrc``. Each extension is built once per
content and toolchain into its own folder, ``ROOT/NAME-KEY``: ROOT is ``$DNERV_FAST_BUILD_DIR``
when set, else ``$XDG_CACHE_HOME/dnerv_fast`` (``~/.cache/dnerv_fast``), and KEY hashes
what the binary depends on (see :func:`build_key`), not where the sources are: the sources
are copied into the folder and compiled from there, so a second checkout, a reinstall in
editable mode or another venv with the same torch reuses the build instead of compiling
again. Old folders are never read again once a key changes; deleting ROOT is always safe.

:func:`extension` is the one loader of the backends (``extension("cpu")``, ``extension("cuda")``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Mapping, Sequence

BUILD_DIR_ENV = "DNERV_FAST_BUILD_DIR"
# The -march of the CPU kernels: "native" unless set, e.g. to x86-64-v3 (AVX2 and FMA, no
# AVX-512) to build and test the AVX2 code paths on a machine that has AVX-512.
CPU_MARCH_ENV = "DNERV_FAST_CPU_MARCH"
HEADER_SUFFIXES = (".h", ".cuh")  # any source may include any of them


def source_dir() -> Path:
    """Folder of the C++/CUDA sources (the ``dnerv_fast.csrc`` package)."""
    import dnerv_fast.csrc

    return Path(dnerv_fast.csrc.__file__).resolve().parent


def build_root() -> Path:
    """Folder holding one build folder per extension and key (see the module docstring)."""
    override = os.environ.get(BUILD_DIR_ENV)
    if override:
        return Path(override).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dnerv_fast"


def _host_cpu() -> str:
    """The CPU's feature flags: -march=native binaries must not move to an older CPU (a
    home folder shared by several machines)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def toolchain() -> dict[str, str]:
    """What, besides sources and flags, a built extension depends on."""
    import torch

    return {"torch": torch.__version__, "cuda": str(torch.version.cuda),
            "python": sys.implementation.cache_tag, "cxx": os.environ.get("CXX", ""),
            "cuda_arch": os.environ.get("TORCH_CUDA_ARCH_LIST", ""), "cpu": _host_cpu()}


def build_key(name: str, src: Path, sources: Sequence[str], flags: Sequence[Sequence[str]],
              tools: Mapping[str, str]) -> str:
    """Short hex digest of the extension name, the names and contents of its ``sources`` and
    of every header in ``src``, the compiler and linker flags and the toolchain
    (:func:`toolchain`); not of ``src``'s path."""
    h = hashlib.sha256(json.dumps([name, [list(f) for f in flags],
                                   sorted(tools.items())]).encode())
    headers = [p for p in src.iterdir() if p.suffix in HEADER_SUFFIXES]
    for path in sorted({*headers, *(src / s for s in sources)}):
        data = path.read_bytes()
        h.update(f"\0{path.name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def _build(name: str, sources: list[str], *, extra_cflags: list[str],
           extra_cuda_cflags: list[str] | None = None, extra_ldflags: list[str] | None = None,
           what: str) -> ModuleType:
    """Load the extension from its build folder, compiling it there first if needed.

    The "compiling" line is printed only when the folder holds no built library yet: its
    key covers sources and flags, so a library there is up to date (ninja still checks).
    """
    from torch.utils.cpp_extension import LIB_EXT, load

    src = source_dir()
    missing = [s for s in sources if not (src / s).is_file()]
    if missing:
        raise FileNotFoundError(f"missing sources in {src}: {', '.join(missing)}")
    flags = [extra_cflags, extra_cuda_cflags or [], extra_ldflags or []]
    directory = build_root() / f"{name}-{build_key(name, src, sources, flags, toolchain())}"
    copied = _copy_sources(src, sources, directory / "src")
    compiling = not (directory / f"{name}{LIB_EXT}").is_file()
    if compiling:
        print(f"dnerv_fast: compiling the {what} kernels into {directory} (once per install "
              f"and torch version; a minute or more)...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    module = load(
        name=name,
        sources=[str(copied / s) for s in sources],
        extra_include_paths=[str(copied)],
        extra_cflags=extra_cflags,
        extra_cuda_cflags=extra_cuda_cflags,
        extra_ldflags=extra_ldflags,
        build_directory=str(directory),
        verbose=os.environ.get("DNERV_FAST_VERBOSE_BUILD") == "1",
    )
    if compiling:
        print(f"dnerv_fast: compiled the {what} kernels in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    return module


def _copy_sources(src: Path, sources: Sequence[str], dest: Path) -> Path:
    """The sources and headers, copied into ``dest`` (the build folder's, keyed by their
    content) where a file differs: the compiler and ninja then see the same paths from any
    checkout, so nothing is rebuilt for a new location."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted({*(p for p in src.iterdir() if p.suffix in HEADER_SUFFIXES), *(src / s for s in sources)}):
        target = dest / path.name
        data = path.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            tmp = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    return dest


def extension(kind: str) -> ModuleType:
    """The compiled kernels of backend ``kind`` (``cpu`` or ``cuda``), built on first use."""
    if kind == "cpu":
        return cpu_extension()
    if kind == "cuda":
        return cuda_extension()
    raise ValueError(f"no compiled extension for {kind!r}")


CPU_SOURCES = ["cpu_binding.cpp", "cpu_warp.cpp", "cpu_saf.cpp", "cpu_tail.cpp", "cpu_winograd.cpp",
               "cpu_heads.cpp"]


@functools.lru_cache(maxsize=None)
def cpu_extension() -> ModuleType:
    """The CPU kernels (``dnerv_fast/csrc/cpu_*.cpp``), built with -O3, OpenMP and -march=native.

    -fno-trapping-math and -fno-math-errno (as torch itself is built) let the GELU loops
    vectorise; they do not change results.

    -march=native is safe because this JIT build runs on the machine that uses it;
    ``$DNERV_FAST_CPU_MARCH`` names another target (the build key covers it).
    """
    march = cpu_march()
    return _build("dnerv_fast_cpu", CPU_SOURCES,
                  extra_cflags=["-O3", f"-march={march}", "-fopenmp", "-fno-trapping-math",
                                "-fno-math-errno"],
                  extra_ldflags=["-fopenmp"], what=f"cpu ({march})" if march != "native" else "cpu")


def cpu_march() -> str:
    """The -march for the CPU kernels; a value that is not a plain target name is refused
    before it reaches the compiler's command line."""
    march = os.environ.get(CPU_MARCH_ENV, "native")
    if not march or not all(c.isalnum() or c in "-_." for c in march):
        raise ValueError(f"{CPU_MARCH_ENV}={march!r} is not a -march target name")
    return march


CUDA_SOURCES = ["cuda_binding.cpp", "cuda_warp.cu", "cuda_saf.cu", "cuda_tail.cu"]


@functools.lru_cache(maxsize=None)
def cuda_extension() -> ModuleType:
    """The CUDA kernels (``dnerv_fast/csrc``: ``*.cu`` + ``cuda_binding.cpp``)."""
    return _build("dnerv_fast_cuda", CUDA_SOURCES, extra_cflags=["-O3"],
                  extra_cuda_cflags=["-O3"], what="cuda")
