"""Build the C++/CUDA extensions on first use (ninja via torch.utils.cpp_extension.load).

Sources live in the installed package ``dnerv_fast.csrc``. Each extension is built once per
process (and cached on disk by torch across processes, rebuilt when a source or flag changes).
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from types import ModuleType


def source_dir() -> Path:
    """Folder of the C++/CUDA sources (the ``dnerv_fast.csrc`` package)."""
    import dnerv_fast.csrc

    return Path(dnerv_fast.csrc.__file__).resolve().parent


def _build(name: str, sources: list[str], *, extra_cflags: list[str],
           extra_cuda_cflags: list[str] | None = None, extra_ldflags: list[str] | None = None,
           what: str) -> ModuleType:
    from torch.utils.cpp_extension import load

    src = source_dir()
    missing = [s for s in sources if not (src / s).is_file()]
    if missing:
        raise FileNotFoundError(f"missing sources in {src}: {', '.join(missing)}")
    print(f"dnerv_fast: compiling the {what} kernels (first use, ~1 min)...", file=sys.stderr, flush=True)
    return load(
        name=name,
        sources=[str(src / s) for s in sources],
        extra_include_paths=[str(src)],
        extra_cflags=extra_cflags,
        extra_cuda_cflags=extra_cuda_cflags,
        extra_ldflags=extra_ldflags,
        verbose=os.environ.get("DNERV_FAST_VERBOSE_BUILD") == "1",
    )


@functools.lru_cache(maxsize=None)
def cpu_extension() -> ModuleType:
    """The CPU kernels (``csrc/cpu_ops.cpp``), built with -O3, OpenMP and -march=native.

    -fno-trapping-math and -fno-math-errno (as torch itself is built) let the GELU loops
    vectorise; they do not change results.

    -march=native is safe because this JIT build runs on the machine that uses it.
    """
    return _build("dnerv_fast_cpu", ["cpu_ops.cpp"],
                  extra_cflags=["-O3", "-march=native", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"],
                  extra_ldflags=["-fopenmp"], what="cpu")


CUDA_SOURCES = ["cuda_binding.cpp", "cuda_warp.cu", "cuda_saf.cu", "cuda_tail.cu"]


@functools.lru_cache(maxsize=None)
def cuda_extension() -> ModuleType:
    """The CUDA kernels (``csrc/*.cu`` + ``csrc/cuda_binding.cpp``)."""
    return _build("dnerv_fast_cuda", CUDA_SOURCES, extra_cflags=["-O3"],
                  extra_cuda_cflags=["-O3"], what="cuda")
