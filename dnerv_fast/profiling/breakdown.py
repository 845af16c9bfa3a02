"""Where decoding time goes, by the stages the model labels with ``dnerv_fast::`` ranges."""
from __future__ import annotations

from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

PREFIX = "dnerv_fast::"


def stage_breakdown(fn: Callable[[], object], device: torch.device) -> list[dict[str, float | str | int]]:
    """Time per labelled stage over one call of ``fn`` (device time on GPU, CPU time on CPU).

    Stages are inclusive and do not nest, so the rest of the call shows as ``other``
    (normalisation, interpolation, concatenation, the final clamp).
    """
    fn()  # warm: no lazy initialisation inside the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
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
