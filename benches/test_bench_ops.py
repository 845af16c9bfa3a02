"""Benchmarks of the fused ops at the UVG-M stage shapes (fc_dim 213, B=1, one T=8 clip).

Run with ``pytest benches/test_bench_ops.py --benchmark-enable``. Every op and stage is a
benchmark group comparing the eager reference, ``torch.compile`` of the reference (compiled and
warmed up outside the timed region; only when timing is enabled) and every other backend that
loads for the device (cuda if present, else cpu). The ``*-bwd`` groups time forward + backward
at the largest stage of each op.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import pytest
import torch

import dnerv_fast.ops as ops
from dnerv_fast.ops import reference
from op_cases import moved, op_args  # tests/ is on sys.path (benches/conftest.py)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
B, T = 1, 8

# (C, H, W) per stage
WARP_STAGES = [(64, 4, 5), (64, 16, 20), (64, 32, 40), (64, 64, 80), (64, 128, 160), (3, 256, 320)]
SAF_STAGES = [(277, 4, 5), (426, 16, 20), (213, 32, 40), (106, 64, 80), (53, 128, 160)]  # K = 64
SAF_K = 64
# (C_out, H_in, W_in, scale)
TAIL_STAGES = [(426, 4, 5, 4), (213, 16, 20, 2), (106, 32, 40, 2), (53, 64, 80, 2), (32, 128, 160, 2)]

OPS = ("flow_warp", "saf_modulate", "upsample_tail")


def _backends() -> list[str]:
    names = ["eager", "compile"]
    for name in ops.available_backends(DEVICE):
        interpreted = name == "triton" and DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
        if name != "reference" and not interpreted:
            names.append(name)
    return names


IMPLS = _backends()


def _inputs(op: str, *shape: int) -> list:
    """The tests' case builder (tests/op_cases.py), in float32 on the device."""
    kw = {"flow_scale": 2.0} if op == "flow_warp" else {}
    return moved(op_args(op, shape, seed=0, **kw), DEVICE, torch.float32)


CASES = {
    "flow_warp": [(f"C{c}@{h}x{w}", functools.partial(_inputs, "flow_warp", B, c, T, h, w))
                  for c, h, w in WARP_STAGES],
    "saf_modulate": [(f"C{c}@{h}x{w}", functools.partial(_inputs, "saf_modulate", B, c, T, h, w, SAF_K))
                     for c, h, w in SAF_STAGES],
    "upsample_tail": [(f"C{c}@{h}x{w}-s{s}", functools.partial(_inputs, "upsample_tail", B, c, T, h, w, s))
                      for c, h, w, s in TAIL_STAGES],
}


@functools.lru_cache(maxsize=None)
def _compiled(op: str) -> Callable:
    return torch.compile(getattr(reference, op), dynamic=False)


def _impl(op: str, name: str, benchmark) -> Callable:
    if name == "eager":
        return getattr(reference, op)
    if name == "compile":
        if benchmark.disabled:
            pytest.skip("torch.compile is only built when timing (--benchmark-enable)")
        return _compiled(op)
    return getattr(ops.load_backend(name), op)


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _forward(fn: Callable, inputs: list) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad():
            out = fn(*inputs)
        _sync()
        return out
    return run


def _forward_backward(fn: Callable, inputs: list) -> Callable[[], None]:
    leaves = [x.requires_grad_() if isinstance(x, torch.Tensor) else x for x in inputs]

    def run() -> None:
        for x in leaves:
            if isinstance(x, torch.Tensor):
                x.grad = None
        out = fn(*leaves)
        out.backward(torch.ones_like(out))
        _sync()
    return run


FORWARD_PARAMS = [(op, stage, make) for op in OPS for stage, make in CASES[op]]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op,stage,make", FORWARD_PARAMS, ids=[f"{op}-{stage}" for op, stage, _ in FORWARD_PARAMS])
def test_forward(benchmark, op, stage, make, impl):
    benchmark.group = f"{op} {stage} fwd ({DEVICE})"
    fn = _impl(op, impl, benchmark)
    run = _forward(fn, make())
    run()  # warm-up (compiles torch.compile graphs, builds extensions) outside the timed region
    benchmark(run)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_forward_backward_largest(benchmark, op, impl):
    stage, make = CASES[op][-2] if op == "flow_warp" else CASES[op][-1]  # C=3@256x320 is tiny
    benchmark.group = f"{op} {stage} fwd+bwd ({DEVICE})"
    fn = _impl(op, impl, benchmark)
    run = _forward_backward(fn, make())
    run()
    benchmark(run)
