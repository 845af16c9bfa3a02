"""Wall-clock timing that an expert would accept: warm-up, device events, medians."""
from __future__ import annotations

import resource
import statistics
import time
from typing import Callable

import torch


def time_repeats(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` timed calls after ``warmup`` untimed ones.

    On CUDA each call is bracketed by events on the current stream (GPU time of the call,
    launch gaps included), with a synchronisation after every call so calls don't overlap.
    """
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        times = []
        for _ in range(repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
        return times
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: list[float]) -> dict[str, float]:
    """Median and spread of a list of seconds (milliseconds in the result)."""
    ordered = sorted(times)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return {"median_ms": statistics.median(ordered) * 1e3, "min_ms": ordered[0] * 1e3,
            "iqr_ms": (q3 - q1) * 1e3, "repeats": len(ordered)}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak GPU memory allocated since the last reset, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return {"peak_gpu_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    return {"peak_process_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
