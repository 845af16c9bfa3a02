"""dnerv_fast.allocator: big freed blocks are reused instead of page-faulting fresh memory.

Each case runs in a fresh interpreter, since the setting is process-wide.
"""
import os
import platform
import subprocess
import sys

import pytest

# Minor page faults per 80 MB tensor allocated, filled and freed (20480 pages when every
# allocation gets fresh pages from the kernel).
PROBE = """
import resource, sys, torch
from dnerv_fast.allocator import heap_setting, keep_large_blocks_on_heap
applied = keep_large_blocks_on_heap()
for _ in range(2):
    torch.empty(20 << 20).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(20 << 20).fill_(1)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(applied, heap_setting(), faults)
"""


def probe(**env: str) -> tuple[str, str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0], out[1], float(out[2])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt")
def test_large_blocks_reused():
    applied, setting, faults = probe(DNERV_FAST_MALLOC="")
    default_applied, default_setting, default_faults = probe(DNERV_FAST_MALLOC="default")
    assert (applied, setting) == ("True", "heap")
    assert (default_applied, default_setting) == ("False", "default")
    assert faults < default_faults / 2, (faults, default_faults)
