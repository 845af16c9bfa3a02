"""dnerv_fast.allocator: big freed blocks are reused instead of page-faulting fresh memory.

Each case runs in a fresh interpreter, since the setting is process-wide.
"""
import os
import platform
import subprocess
import sys

import pytest

# Minor page faults per 80 MB block malloc'ed, filled and freed (20480 pages when every
# block gets fresh pages from the kernel). The blocks come from malloc itself: torch's CPU
# tensors are 64-byte aligned (posix_memalign), and glibc 2.36 often does not reuse a freed
# aligned block for the next aligned request of the same size once a small allocation sits
# after it (12288 of 20480 pages faulted again on this machine, varying from run to run), so
# a tensor probe measures glibc's memalign, not the setting (see dnerv_fast.allocator).
PROBE = """
import ctypes, resource
from dnerv_fast.allocator import heap_setting, keep_large_blocks_on_heap
applied = keep_large_blocks_on_heap()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def block():
    p = libc.malloc(80 << 20)
    libc.memset(p, 1, 80 << 20)
    libc.free(p)

for _ in range(2):
    block()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block()
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
