"""Every csrc/*.cu file compiles with plain nvcc (no torch headers) for sm_80 and sm_90.

Needs nvcc only, no GPU; skipped where nvcc is absent.
"""
from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dnerv_fast.ops._jit import CUDA_SOURCES, source_dir

NVCC = shutil.which("nvcc")
ARCHS = ["-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
# torch.utils.cpp_extension adds these to every nvcc call; the kernels must build under them.
TORCH_NVCC_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                      "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]
CU_FILES = sorted(source_dir().glob("*.cu"))

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found")


def _compile(src: Path, out_dir: Path) -> subprocess.CompletedProcess:
    cmd = [NVCC, "-std=c++17", "-O3", *TORCH_NVCC_DEFINES, *ARCHS, "-I", str(source_dir()), "-c", str(src),
           "-o", str(out_dir / (src.stem + ".o"))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_sources_listed():
    """The JIT build compiles exactly the .cu files present."""
    assert CU_FILES, "no .cu sources found"
    assert {p.name for p in CU_FILES} == {s for s in CUDA_SOURCES if s.endswith(".cu")}


def test_nvcc_compiles_every_cu_file(tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda src: _compile(src, tmp_path), CU_FILES))
    failures = [f"{src.name}:\n{r.stderr[-3000:]}" for src, r in zip(CU_FILES, results) if r.returncode]
    assert not failures, "\n\n".join(failures)
    for src in CU_FILES:
        assert (tmp_path / (src.stem + ".o")).stat().st_size > 0
