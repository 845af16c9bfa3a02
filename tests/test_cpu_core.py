"""The CPU kernels build and agree off x86: every CPU source compiles for aarch64 (Debian's
cross compiler), and the kernels' torch-free cores (tests/cpu_core/parity.cpp) give the same
values under qemu-user as natively. Skipped where the cross tools are not installed (CI
installs g++-aarch64-linux-gnu and qemu-user)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dnerv_fast.ops import _jit

CROSS = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
DRIVER = Path(__file__).parent / "cpu_core" / "parity.cpp"
needs_cross = pytest.mark.skipif(shutil.which(CROSS) is None or shutil.which(QEMU) is None,
                                 reason=f"{CROSS} / {QEMU} not installed")


def _build(compiler: str, flags: list[str], out: Path) -> None:
    subprocess.run([compiler, "-std=c++17", "-O2", *flags, f"-I{_jit.source_dir()}", str(DRIVER), "-o", str(out)],
                   check=True, capture_output=True, text=True)


def _values(lines: str) -> dict[str, float]:
    out = {}
    for line in lines.splitlines():
        if not line.startswith("#"):
            name, index, value = line.split()
            key = f"{name}[{index}]"
            out[key if key not in out else key + "/double"] = float(value)
    return out


@needs_cross
def test_torch_free_cores_agree_natively_and_on_aarch64(tmp_path):
    _build("g++", ["-march=native"] if sys.platform == "linux" else [], tmp_path / "native")
    _build(CROSS, ["-static"], tmp_path / "arm")
    native = _values(subprocess.run([tmp_path / "native"], check=True, capture_output=True, text=True).stdout)
    arm = _values(subprocess.run([QEMU, tmp_path / "arm"], check=True, capture_output=True, text=True).stdout)
    assert native.keys() == arm.keys() and len(native) > 10000
    # Float paths differ in vector width and FMA contraction (AVX2/AVX-512 vs portable vectors),
    # so results agree to rounding; the float64 paths are scalar code.
    worst = max(abs(native[k] - arm[k]) / (1.0 + abs(native[k])) for k in native)
    assert worst < 2e-5, worst


@needs_cross
def test_every_cpu_source_compiles_for_aarch64(tmp_path):
    from torch.utils.cpp_extension import include_paths

    includes = [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}", f"-I{_jit.source_dir()}"]
    from dnerv_fast.ops import loss_cpu

    for source in [*_jit.CPU_SOURCES, *loss_cpu.SOURCES]:
        result = subprocess.run([CROSS, "-std=c++17", "-fsyntax-only", "-fopenmp", *includes,
                                 "-DTORCH_EXTENSION_NAME=dnerv_fast_cpu", str(_jit.source_dir() / source)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{source}:\n{result.stderr[-3000:]}"
