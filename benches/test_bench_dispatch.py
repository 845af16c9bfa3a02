"""Per-call dispatch overhead of the public ops on tiny tensors (the kernel time is negligible).

Three ways to run the same kernel, one benchmark group per op and autograd mode:
``public`` (``dnerv_fast.ops.<op>``: input checks, backend choice, autograd wrapper),
``backend`` (the backend module's autograd entry point) and ``kernel`` (its raw forward, no
autograd). ``public - kernel`` is the whole per-call cost of the dispatch glue; issue 12's
target is at most 10 microseconds. Runs on the fast backend auto picks for the device.
Run: ``pytest benches/test_bench_dispatch.py --benchmark-enable --benchmark-columns=min,median``.
"""
from __future__ import annotations

import pytest
import torch

import dnerv_fast.ops as ops

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKEND = ops.resolve(DEVICE)[0]
pytestmark = pytest.mark.skipif(BACKEND == "reference", reason=f"no fast backend on {DEVICE}")


def _inputs(op: str) -> list:
    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=DEVICE)
    if op == "flow_warp":
        return [r(1, 2, 3, 4), r(1, 2, 3, 4), r(1, 4, 2, 3, 4), torch.rand(1, 2, device=DEVICE)]
    if op == "saf_modulate":
        return [r(1, 2, 2, 3, 4), r(1, 4, 2, 3, 4), r(4, 4), r(4)]
    return [r(1, 8, 2, 3, 4), r(8), 2, r(4, 2), r(4)]


def _variant(op: str, how: str):
    module = ops.load_backend(BACKEND)
    if how == "public":
        return getattr(ops, op)
    if how == "backend":
        return getattr(module, op)
    forward = getattr(module, f"{op}_forward")
    return (lambda *a: forward(*a, True)) if op == "saf_modulate" else forward


@pytest.mark.parametrize("how", ["public", "backend", "kernel"])
@pytest.mark.parametrize("op", ["flow_warp", "saf_modulate", "upsample_tail"])
def test_dispatch_no_grad(benchmark, op, how):
    benchmark.group = f"dispatch {op} no_grad ({BACKEND})"
    fn, args = _variant(op, how), _inputs(op)
    with torch.no_grad():
        fn(*args)
        benchmark(fn, *args)


@pytest.mark.parametrize("how", ["public", "backend"])
def test_dispatch_building_a_graph(benchmark, how):
    benchmark.group = f"dispatch flow_warp with autograd ({BACKEND})"
    fn = _variant("flow_warp", how)
    args = [x.requires_grad_() for x in _inputs("flow_warp")]
    fn(*args)
    benchmark(fn, *args)
