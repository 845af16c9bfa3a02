"""The fused training loss against its alternatives, and the UVG-XS training step it speeds up,
side by side in one process (interleaved rounds, medians; the machine may be shared).

* ``test_loss``: 0.7 L1 + 0.3 (1 - SSIM), forward plus backward, at the UVG-XS batch shape
  (2 clips x 8 frames x 3 x 256 x 320, float32): the plain PyTorch reference, pytorch-msssim's
  ``ssim`` with the same L1 term, ``torch.compile`` of the reference, and the fused op on the
  backend ``auto`` picks. Also the bytes the fused op moves (inputs read in the forward, the
  three saved maps written and read back, inputs read and the gradient written in the
  backward) against the measured copy bandwidth of this machine (a 64 MB ``copy_``: bytes
  read plus written per second), which states the distance to the memory limit.
* ``test_train_step``: one UVG-XS training step (2 clips) in the research code's layout
  (reference ops and loss) and on the ``cpu`` backend (fused ops and loss), interleaved, plus
  a profile table of where the fused step's time goes.

Run: ``DNERV_BENCH_MALLOC=heap DNERV_BENCH_RECORD=1 pytest benches/test_bench_loss.py
--benchmark-enable -s`` (``DNERV_BENCH_ROUNDS`` rounds after a warm-up, default 5); figures go
to ``docs/results/fused_loss.json`` with the command, date, machine and commit.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import pytest
import torch
from results import record

from dnerv_fast import ops
from dnerv_fast.ops import loss_reference
from dnerv_fast.ops import ssim_loss as fused

pytestmark = pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="cpu backend not built")

ROUNDS = int(os.environ.get("DNERV_BENCH_ROUNDS") or 5)
RECORD = os.environ.get("DNERV_BENCH_RECORD") == "1"
SHAPE = (16, 3, 256, 320)  # UVG-XS batch: 2 clips x 8 frames
FIGURES: dict[str, object] = {}


def _interleave(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Medians (s) of every variant and of its per-round speed-up over ``reference``."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds + 1):  # the first round warms up
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    base = next(iter(runs))
    info = {f"{name}_s": statistics.median(t[1:]) for name, t in times.items()}
    info.update({f"{name}_speedup_vs_{base}": statistics.median(b / v for b, v in zip(times[base][1:], t[1:]))
                 for name, t in times.items() if name != base})
    print("\n" + ", ".join(f"{k} {v:.4g}" for k, v in info.items()))
    return info


def _copy_bandwidth() -> float:
    """Bytes read plus written per second by a 64 MB copy (median of 7)."""
    src = torch.rand(16 * 2**20)
    dst = torch.empty_like(src)
    times = []
    for _ in range(8):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / statistics.median(times[1:])


def _fused_bytes(out: torch.Tensor) -> int:
    N, C, H, W = out.shape
    Ho, Wo = H - 10, W - 10
    maps = 3 * N * C * Ho * (-(-Wo // fused.MAP_ALIGN) * fused.MAP_ALIGN) * 4
    frames = out.numel() * 4
    # forward: read out, ref, write maps; backward: read maps, out, ref, write the gradient
    return 2 * frames + maps + maps + 3 * frames


def test_loss(benchmark):
    g = torch.Generator().manual_seed(0)
    target = torch.rand(*SHAPE, generator=g)
    out = (target + 0.1 * torch.randn(*SHAPE, generator=g)).clamp(0, 1).requires_grad_()
    compiled = torch.compile(loss_reference.ssim_loss)

    def loss_of(sums) -> torch.Tensor:
        error, dissimilarity, pixels, windows = sums
        return 0.7 * error / pixels + 0.3 * dissimilarity / windows

    def step(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            out.grad = None
            fn().backward()
        return run

    def fused_loss() -> torch.Tensor:
        with ops.use_backend("auto"):
            return loss_of(fused.ssim_loss(out, target))

    def msssim_loss() -> torch.Tensor:
        import pytorch_msssim
        return 0.7 * (out - target).abs().mean() + 0.3 * (1 - pytorch_msssim.ssim(out, target, data_range=1))

    runs = {"reference": step(lambda: loss_of(loss_reference.ssim_loss(out, target))),
            "pytorch_msssim": step(msssim_loss),
            "compiled_reference": step(lambda: loss_of(compiled(out, target))),
            "fused": step(fused_loss)}
    info: dict[str, object] = dict(benchmark.pedantic(lambda: _interleave(runs, ROUNDS), rounds=1, iterations=1))
    moved = _fused_bytes(out)
    bandwidth = _copy_bandwidth()
    info.update({"backend": fused.resolved_name("cpu"), "shape": list(SHAPE), "fused_bytes_moved": moved,
                 "copy_bandwidth_bytes_per_s": bandwidth,
                 "fused_memory_bound_s": moved / bandwidth,
                 "fused_fraction_of_memory_limit": moved / bandwidth / info["fused_s"],
                 "saved_bytes": (moved - 5 * out.numel() * 4) // 2})
    print(f"fused: {moved / 1e6:.1f} MB moved, copy bandwidth {bandwidth / 1e9:.2f} GB/s, "
          f"memory-bound time {moved / bandwidth * 1e3:.1f} ms vs {info['fused_s'] * 1e3:.1f} ms measured")
    FIGURES["loss"] = info
    _write()


def test_train_step(benchmark):
    from test_bench_cpu_pipeline import _forward, _variant, _workload

    model, example = _workload("uvg-XS", 2, train=True)
    B, T = example[0].shape[0], example[0].shape[2]
    target = torch.rand(B, 3, T, *model.config.patch_size, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, T, dtype=torch.bool)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    from dnerv_fast.train.loss import reconstruction_loss

    def make(variant: str) -> Callable[[], None]:
        def run() -> None:
            with _variant(variant):
                optimizer.zero_grad(set_to_none=True)
                reconstruction_loss(_forward(model, variant, *example), target, mask).backward()
                optimizer.step()
        return run

    runs = {"research_layout": make("research_layout"), "cpu": make("cpu")}
    info: dict[str, object] = dict(benchmark.pedantic(lambda: _interleave(runs, ROUNDS), rounds=1, iterations=1))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        runs["cpu"]()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1
    info["profile_cpu_step"] = [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3,
                                 "share": e.self_cpu_time_total / total, "calls": e.count} for e in rows]
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    FIGURES["train_step"] = info
    _write()


def _write() -> None:
    if not RECORD:
        return
    env = " ".join(f"{k}={os.environ[k]}" for k in ("DNERV_BENCH_MALLOC", "DNERV_BENCH_ROUNDS")
                   if k in os.environ)
    record("fused_loss", {"shared_machine": True, **FIGURES},
           f"{env} DNERV_BENCH_RECORD=1 pytest benches/test_bench_loss.py --benchmark-enable -s".strip())
