"""Wall-clock timing that an expert would accept: warm-up, device events, medians."""
from __future__ import annotations

import resource
import statistics
import time
from typing import Callable

import torch


# A spread (IQR) above this share of the median marks a figure as noisy: another process,
# frequency scaling or too few repeats; it should not be quoted as is.
NOISY_IQR_SHARE = 0.10
PROGRESS_EVERY_S = 2.0


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call. On CUDA the call is bracketed by events on the current stream
    (GPU time, launch gaps included) and synchronised, so calls don't overlap."""
    if device.type == "cuda":
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_repeats(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int,
                 progress: Callable[[str], None] | None = None) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` timed calls after ``warmup`` untimed ones.

    ``progress`` hears, at most every PROGRESS_EVERY_S seconds, how many calls are done and
    about how long the rest will take.
    """
    total = warmup + repeats
    times: list[float] = []
    started = last = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    for i in range(total):
        seconds = _timed(fn, device)
        if i >= warmup:
            times.append(seconds)
        now = time.perf_counter()
        if progress is not None and i + 1 < total and now - last >= PROGRESS_EVERY_S:
            left = (now - started) / (i + 1) * (total - i - 1)
            progress(f"  {i + 1}/{total} calls ({warmup} warm-up), about {left:.0f} s left")
            last = now
    return times


def summarize(times: list[float]) -> dict[str, float | bool]:
    """Median and spread of a list of seconds (milliseconds in the result); ``noisy`` when
    the IQR exceeds NOISY_IQR_SHARE of the median."""
    ordered = sorted(times)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    median = statistics.median(ordered)
    return {"median_ms": median * 1e3, "min_ms": ordered[0] * 1e3, "iqr_ms": (q3 - q1) * 1e3,
            "repeats": len(ordered), "noisy": q3 - q1 > NOISY_IQR_SHARE * median}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak GPU memory allocated since the last reset, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return {"peak_gpu_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    return {"peak_process_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
