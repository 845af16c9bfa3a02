"""Where decoding time goes, by the stages the model labels with ``dnerv_fast::`` ranges."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

import torch
from torch.profiler import ProfilerActivity, profile

PREFIX = "dnerv_fast::"


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side (Kineto) logs its start and stop straight to file descriptor
    2 (``USDT: ... profiler_start``); keep those lines out of the command's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def stage_breakdown(fn: Callable[[], object], device: torch.device) -> list[dict[str, float | str | int]]:
    """Time per labelled stage over one call of ``fn`` (device time on GPU, CPU time on CPU).

    Stages are inclusive and do not nest, so the rest of the call shows as ``other``
    (normalisation, interpolation, concatenation, the final clamp).
    """
    fn()  # warm: no lazy initialisation inside the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _native_stderr_silenced(), profile(activities=activities) as prof:
        with torch.profiler.record_function(PREFIX + "total"):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    rows = {}
    for event in prof.key_averages():
        if event.key.startswith(PREFIX):
            gpu = getattr(event, "device_time_total", 0.0)
            rows[event.key[len(PREFIX):]] = (event.count, (gpu if device.type == "cuda" and gpu > 0
                                                           else event.cpu_time_total) / 1e3)
    total = rows.pop("total", (1, 0.0))[1]
    table = [{"stage": name, "calls": calls, "ms": ms, "share": ms / total if total else 0.0}
             for name, (calls, ms) in sorted(rows.items(), key=lambda kv: -kv[1][1])]
    other = total - sum(r["ms"] for r in table)
    table.append({"stage": "other", "calls": 1, "ms": other, "share": other / total if total else 0.0})
    table.append({"stage": "total", "calls": 1, "ms": total, "share": 1.0})
    return table
