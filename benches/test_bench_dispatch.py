"""Per-call dispatch overhead of the public ops on tiny tensors (the kernel time is negligible).

Two ways to run the same kernel, one benchmark group per op and autograd mode: ``public``
(``dnerv_fast.ops.<op>``: input checks, the ``torch.library`` custom op, the registry's
choice, autograd where a graph is built) and ``kernel`` (the backend's raw forward, no
autograd). ``public - kernel`` is the whole per-call cost of the dispatch glue; the target is
at most 10 microseconds. Runs on the fast backend auto picks for the device.
Run: ``pytest benches/test_bench_dispatch.py --benchmark-enable --benchmark-columns=min,median``.
"""
from __future__ import annotations

import pytest
import torch

import dnerv_fast.ops as ops
from op_cases import moved, op_args  # tests/ is on sys.path (benches/conftest.py)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKEND = ops.resolve(DEVICE)[0]
pytestmark = pytest.mark.skipif(BACKEND == "reference", reason=f"no fast backend on {DEVICE}")


# Tiny shapes, built by the tests' case builder (tests/op_cases.py).
SHAPES = {"flow_warp": (1, 2, 2, 3, 4), "saf_modulate": (1, 2, 2, 3, 4, 4),
          "upsample_tail": (1, 2, 2, 3, 4, 2)}


def _inputs(op: str) -> list:
    return moved(op_args(op, SHAPES[op], seed=0), DEVICE, torch.float32)


def _variant(op: str, how: str):
    module = ops.load_backend(BACKEND)
    if how == "public":
        return getattr(ops, op)
    forward = getattr(module, f"{op}_forward")
    return (lambda *a: forward(*a, decoding=True)) if op == "saf_modulate" else forward


@pytest.mark.parametrize("how", ["public", "kernel"])
@pytest.mark.parametrize("op", ["flow_warp", "saf_modulate", "upsample_tail"])
def test_dispatch_no_grad(benchmark, op, how):
    benchmark.group = f"dispatch {op} no_grad ({BACKEND})"
    fn, args = _variant(op, how), _inputs(op)
    with torch.no_grad():
        fn(*args)
        benchmark(fn, *args)


@pytest.mark.parametrize("how", ["public"])
def test_dispatch_building_a_graph(benchmark, how):
    benchmark.group = f"dispatch flow_warp with autograd ({BACKEND})"
    fn = _variant("flow_warp", how)
    args = [x.requires_grad_() for x in _inputs("flow_warp")]
    fn(*args)
    benchmark(fn, *args)
