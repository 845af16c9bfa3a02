"""Keep big CPU tensors on the heap instead of fresh ``mmap`` pages (glibc).

glibc's malloc serves every block above its mmap threshold (32 MiB at most by default) with
new pages from the kernel and unmaps them on free, so each big temporary of a decode (the
feature maps of one 256x320 clip are 20-80 MB) page-faults freshly zeroed memory again.
Raising the mmap and trim thresholds lets freed blocks be reused. Measured on one UVG-M clip
(2 cores, fp32): eager reference 1196 -> 696 ms, fused ``cpu`` backend 631 -> 572 ms. The
cost is that the process keeps its peak heap instead of returning it to the system.

A limit, measured on glibc 2.36: torch's CPU tensors are 64-byte aligned (posix_memalign),
and glibc does not reuse a freed aligned block for the next aligned request of the same size
when a small allocation sits after it; it extends the heap instead, and the fresh pages fault.
In a loop of one 80 MB tensor at a time, 40-70% of the pages faulted again (varying from run
to run); a decode's blocks differ in size and coalesce, and gain more (figures above).

The ``dnerv-fast`` commands do this at start (``DNERV_FAST_MALLOC=default`` opts out); a
library user may call :func:`keep_large_blocks_on_heap` once, early.
"""
from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "DNERV_FAST_MALLOC"
_M_TRIM_THRESHOLD = -1   # mallopt parameters, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30

_applied = False


def keep_large_blocks_on_heap() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when in effect.

    Does nothing (False) off glibc or when ``DNERV_FAST_MALLOC=default``.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV_VAR, "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mmap_set = mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
    trim_set = mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) == 1
    _applied = mmap_set and trim_set
    return _applied


def heap_setting() -> str:
    """'heap' when :func:`keep_large_blocks_on_heap` is in effect, else 'default'."""
    return "heap" if _applied else "default"
