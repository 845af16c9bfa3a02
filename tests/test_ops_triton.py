"""The Triton backend beyond parity, which tests/test_ops_parity.py checks: mixed feature /
flow dtypes, routing, declined calls, autotuning, launch failures, the fp32 precision API and
the CUDA backend's use of the Triton SAF kernel.

Without a GPU the kernels run on CPU tensors under the Triton interpreter (conftest sets
TRITON_INTERPRET=1 before anything imports them); with one they run on CUDA tensors. As the
interpreter accepts some code the GPU compiler rejects, tests/test_triton_aot.py compiles every
kernel for sm_80 / sm_90 (no GPU needed).
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch

pytest.importorskip("triton")

import dnerv_fast.ops as ops  # noqa: E402
from dnerv_fast.ops import reference, registry  # noqa: E402
from dnerv_fast.ops import triton_backend as tb  # noqa: E402
from op_cases import (TOLERANCES, assert_parity, flow_warp_inputs, off_grid, saf_inputs,  # noqa: E402
                      tail_inputs)

HAS_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if HAS_CUDA else "cpu"
needs_runtime = pytest.mark.skipif(not (HAS_CUDA or INTERPRET),
                                   reason="Triton needs a GPU or TRITON_INTERPRET=1")


def _warp_inputs(shape, seed, dtype):
    start, end, flow, t = flow_warp_inputs(shape, seed)
    return [start, end, off_grid(flow, dtype), t]


@needs_runtime
def test_flow_warp_half_features_fp32_flow():
    """Flow and t keep their own dtype (coordinates are fp32 anyway); so do their gradients."""
    start, end, flow, t = _warp_inputs((1, 5, 3, 6, 7), 9, torch.float32)
    feats = [x.to(torch.bfloat16).to(DEVICE).requires_grad_() for x in (start, end)]
    coords = [x.float().to(DEVICE).requires_grad_() for x in (flow, t)]
    exact = [x.detach().float().requires_grad_() for x in feats + coords]
    out, ref = tb.flow_warp(*feats, *coords), reference.flow_warp(*exact)
    assert out.dtype == torch.bfloat16
    tol = TOLERANCES[torch.bfloat16]
    torch.testing.assert_close(out.float(), ref, atol=tol.atol, rtol=tol.rtol)
    out.float().sum().backward()
    ref.sum().backward()
    for got, exp in zip(feats + coords, exact):
        assert got.grad.dtype == got.dtype
        torch.testing.assert_close(got.grad.float(), exp.grad, atol=tol.grad * tol.atol,
                                   rtol=tol.grad * tol.rtol)
    assert registry.not_supported_reasons("triton", "flow_warp", (feats[0], feats[1].float(), *coords))


def _tail_fns(scale: int):
    def fast(y, cb, w, b=None):
        return tb.upsample_tail(y, cb, scale, w, b)

    def ref(y, cb, w, b=None):
        return reference.upsample_tail(y, cb, scale, w, b)
    return fast, ref


@needs_runtime
def test_use_backend_routes_public_ops_through_kernels(monkeypatch):
    from dnerv_fast.kernels import flow_warp, saf, upsample_tail
    calls = []
    for module, name in ((flow_warp, "flow_warp_forward"), (saf, "saf_forward"),
                         (upsample_tail, "tail_forward")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    warp_in = [x.float().to(DEVICE) for x in _warp_inputs((1, 3, 2, 4, 5), 2, torch.float32)]
    saf_in = [x.float().to(DEVICE) for x in saf_inputs((1, 3, 2, 4, 5, 6), 2)]
    (y, cb, w, b), scale = tail_inputs((1, 3, 2, 4, 5, 2), 2)
    tail_in = [y.float().to(DEVICE), cb.float().to(DEVICE), scale, w.float().to(DEVICE),
               b.float().to(DEVICE)]
    with ops.use_backend("triton"):
        assert ops.resolve(DEVICE)[0] == "triton"
        outs = [ops.flow_warp(*warp_in), ops.saf_modulate(*saf_in), ops.upsample_tail(*tail_in)]
    assert calls == ["flow_warp_forward", "saf_forward", "tail_forward"]
    refs = [reference.flow_warp(*warp_in), reference.saf_modulate(*saf_in),
            reference.upsample_tail(*tail_in)]
    for got, exp in zip(outs, refs):
        torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-4)


@needs_runtime
def test_float64_is_declined_to_reference():
    inputs = [x.to(DEVICE) for x in saf_inputs((1, 3, 2, 4, 5, 6), 4)]
    assert registry.not_supported_reasons("triton", "saf_modulate", inputs)
    assert registry.not_supported_reasons("triton", "saf_modulate", [x.float() for x in inputs]) == []
    with ops.use_backend("triton"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = ops.saf_modulate(*inputs)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference.saf_modulate(*inputs))


@pytest.mark.skipif(not INTERPRET, reason="runs the GPU config list under the interpreter")
def test_tail_backward_first_call_with_gpu_autotuning(monkeypatch):
    """Autotuning _tail_bwd over the GPU configs (a benchmarker that prefers the last, largest
    block) must not leave the partial sums of the smaller blocks in the weight / bias
    gradients of the first call for a key."""
    from dnerv_fast.kernels import upsample_tail as U
    times = iter(range(100, 0, -1))  # each config timed is faster than the one before
    monkeypatch.setattr(U._tail_bwd, "configs", U.gpu_configs())
    monkeypatch.setattr(U._tail_bwd, "cache", {})
    monkeypatch.setattr(U._tail_bwd, "_do_bench", lambda call, quantiles=None: (call(), [next(times)] * 3)[1])
    (y, cb, w, b), scale = tail_inputs((1, 3, 8, 6, 7, 2), 13)   # 168 pixels: 3 blocks of 64, 1 of 256
    assert_parity(*_tail_fns(scale), [y, cb, w, b], torch.float32, DEVICE)
    assert U._tail_bwd.best_config.kwargs["BLOCK_P"] == 256, "the benchmarker did not pick the largest block"


@needs_runtime
def test_launch_failure_falls_back_once_and_is_remembered(monkeypatch):
    """A Triton compile error at the first launch under auto: one warning naming the backend
    and the error, the call completes on the next backend, and later calls go there directly."""
    from triton.runtime.errors import PTXASError

    from dnerv_fast.kernels import flow_warp as W
    from dnerv_fast.ops import registry
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    for name, value in (("_failed", {}), ("_warned", set()), ("_resolved", {}),
                        ("_loaded", dict(registry._loaded))):
        monkeypatch.setattr(registry, name, value)
    monkeypatch.setitem(registry.AUTO_ORDER, DEVICE, ("triton", *registry.AUTO_ORDER[DEVICE]))
    launches = []

    def broken(*args):
        launches.append(args)
        raise PTXASError("ptxas fatal   : Unresolved extern function 'test_only'")
    monkeypatch.setattr(W, "flow_warp_forward", broken)
    inputs = [x.float().to(DEVICE) for x in _warp_inputs((1, 3, 2, 4, 5), 4, torch.float32)]
    assert ops.resolve(DEVICE)[0] == "triton"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ops.flow_warp(*inputs)
        second = ops.flow_warp(*inputs)
    messages = [str(w.message) for w in caught if "dnerv_fast" in str(w.message)]
    assert len(messages) == 1, messages
    assert "'triton'" in messages[0] and "PTXASError" in messages[0] and "test_only" in messages[0]
    assert len(launches) == 1
    fallback = registry.AUTO_ORDER[DEVICE][1]
    assert ops.resolve(DEVICE)[0] == fallback and "triton" not in ops.available_backends(DEVICE)
    expected = reference.flow_warp(*inputs)
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(second, first)


def test_saf_precision_reads_the_new_fp32_precision_api(monkeypatch):
    """Once a program uses torch's fp32_precision API, reading allow_tf32 raises; the SAF
    kernel's precision choice must not. A fake CUDA tensor reaches the
    check without a GPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from dnerv_fast.kernels import saf
    before = torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        with FakeTensorMode():
            x = torch.empty(2, device="cuda")
            assert saf._precision(x) == "tf32"
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            assert saf._precision(x) == "ieee"
            assert saf._precision(x.half()) == "ieee"
    finally:
        torch.backends.cuda.matmul.fp32_precision = before
