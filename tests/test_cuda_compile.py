"""Every dnerv_fast/csrc/*.cu file compiles with plain nvcc (no torch headers) for sm_80 and sm_90, and
no float / half / bfloat16 kernel spills registers (ptxas -v).

Needs nvcc only, no GPU; skipped where nvcc is absent. float64 kernels (the gradcheck type,
not a speed path) may spill: the T <= 16 tail backward does on sm_80.
"""
from __future__ import annotations

import shutil
import subprocess
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dnerv_fast.ops._jit import CUDA_SOURCES, source_dir
from dnerv_fast.ops.loss_cuda import SOURCES as LOSS_CUDA_SOURCES

NVCC = shutil.which("nvcc")
ARCHS = ["-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
# torch.utils.cpp_extension adds these to every nvcc call; the kernels must build under them.
TORCH_NVCC_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                      "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]
CU_FILES = sorted(source_dir().glob("*.cu"))

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found")


def _compile(src: Path, out_dir: Path) -> subprocess.CompletedProcess:
    cmd = [NVCC, "-std=c++17", "-O3", *TORCH_NVCC_DEFINES, *ARCHS, "-Xptxas", "-v", "-I", str(source_dir()),
           "-c", str(src),
           "-o", str(out_dir / (src.stem + ".o"))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_sources_listed():
    """The JIT build compiles exactly the .cu files present."""
    assert CU_FILES, "no .cu sources found"
    assert {p.name for p in CU_FILES} == {s for s in (*CUDA_SOURCES, *LOSS_CUDA_SOURCES) if s.endswith(".cu")}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    out_dir = tmp_path_factory.mktemp("nvcc")
    with ThreadPoolExecutor(max_workers=2) as pool:
        return out_dir, list(pool.map(lambda src: _compile(src, out_dir), CU_FILES))


def test_nvcc_compiles_every_cu_file(compiled):
    out_dir, results = compiled
    failures = [f"{src.name}:\n{r.stderr[-3000:]}" for src, r in zip(CU_FILES, results) if r.returncode]
    assert not failures, "\n\n".join(failures)
    for src in CU_FILES:
        assert (out_dir / (src.stem + ".o")).stat().st_size > 0


def spills(ptxas_log: str) -> list[str]:
    """'kernel (arch): N bytes spill stores, M bytes spill loads' for every spilling kernel."""
    out, kernel, arch = [], "?", "?"
    for line in ptxas_log.splitlines():
        entry = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
        if entry:
            kernel, arch = entry.groups()
        spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if spill and spill.groups() != ("0", "0"):
            out.append(f"{kernel} ({arch}): {spill.group(0)}")
    return out


def test_no_kernel_spills_but_float64(compiled):
    _, results = compiled
    assert all(r.returncode == 0 for r in results)
    found = [s for r in results for s in spills(r.stderr)]
    # Mangled names: "..._kernelId..." is an instantiation whose first template argument is double.
    assert not [s for s in found if "_kernelId" not in s], "\n".join(found)
