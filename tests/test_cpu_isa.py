"""The CPU kernels' AVX2 code paths, built and tested on a machine whose native build takes
the AVX-512 ones: the CPU parity tests run again, in a fresh process, against a build for
x86-64-v3 (AVX2 and FMA, no AVX-512), the target of the 2-core AMD machines the CPU
speed figures come from."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from dnerv_fast.ops import _jit

ROOT = Path(__file__).resolve().parent.parent
PARITY_TESTS = ["tests/test_ops_parity.py", "tests/test_ops_cpu.py", "tests/test_winograd.py",
                "tests/test_fused_heads.py", "-k", "not triton"]  # the matrix's CPU-backend rows


def _has_avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


@pytest.mark.skipif(platform.machine() != "x86_64" or not _has_avx512(),
                    reason="the native build already takes the AVX2 paths (or this is not x86)")
def test_avx2_build_passes_the_cpu_parity_tests():
    env = dict(os.environ, **{_jit.CPU_MARCH_ENV: "x86-64-v3"})
    lanes = subprocess.run(
        [sys.executable, "-c", "from dnerv_fast.ops._jit import cpu_extension as e; "
                               "print(e().simd_lanes)"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert lanes.returncode == 0, lanes.stderr
    assert lanes.stdout.split()[-1] == "8", "the x86-64-v3 build must use 8-float (AVX2) vectors"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *PARITY_TESTS], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_a_bad_march_is_refused_before_the_compiler(monkeypatch):
    monkeypatch.setenv(_jit.CPU_MARCH_ENV, "native -o /tmp/x")
    with pytest.raises(ValueError, match="not a -march target"):
        _jit.cpu_march()
