"""The CPU backend (dnerv_fast/csrc/cpu_*.cpp) beyond parity, which tests/test_ops_parity.py
checks: it builds, its decoding layout, deterministic gradients, routing and fallback.
"""
from __future__ import annotations

import pytest
import torch

import dnerv_fast.ops as ops
from dnerv_fast.ops import reference
from op_cases import (TOLERANCES, assert_parity, flow_warp_inputs, fresh_seed, reported_seed,
                      saf_inputs, tail_inputs)

cpu = pytest.importorskip("dnerv_fast.ops.cpu_backend")


def test_the_extension_builds():
    """The parity matrix skips a backend that does not load; the CPU one must load."""
    try:
        cpu.load()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the CPU extension does not build: {exc}")


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("shape", [(2, 5, 3, 33, 37, 6), (1, 130, 2, 32, 32, 8)], ids=str)
def test_saf_modulate_channels_last_output(shape, dtype):
    """Without an autograd graph (decoding), frames of >= CHANNELS_LAST_MIN_PIXELS come back
    channels_last_3d with the same values (odd sizes: partial pixel tiles; 130 channels: a
    partial channel tile). With a graph (training) the output stays contiguous."""
    H, W = shape[3:5]
    assert H * W >= cpu.CHANNELS_LAST_MIN_PIXELS
    seed = fresh_seed()
    inputs = saf_inputs(shape, seed)
    with torch.no_grad():
        out = cpu.saf_modulate(*[v.to(dtype) for v in inputs])
        assert out.is_contiguous(memory_format=torch.channels_last_3d) and not out.is_contiguous()
    with reported_seed(seed):
        assert_parity(cpu.saf_modulate, reference.saf_modulate, inputs, dtype, backward=False)
    assert cpu.saf_modulate(*[v.to(dtype).requires_grad_() for v in inputs]).is_contiguous()


@pytest.mark.parametrize("shape", [(2, 37, 3, 7, 9), (1, 64, 8, 16, 20), (1, 5, 2, 1, 6)], ids=str)
def test_flow_warp_backward_reads_channels_last_float32(shape):
    """float32 channels-last start and end (the keyframe encoder's layout) take their own
    backward kernels: channels in vectors, partial last group (37 and 5 channels), a 1-pixel
    axis. Gradients against float64, the feature gradients channels-last, bit-identical twice.
    The flow and t gradients sum C terms per pixel (t: C*H*W), hence the looser bound."""
    seed = fresh_seed()
    inputs = flow_warp_inputs(shape, seed)
    weight = torch.randn(shape[0], shape[1], shape[2], *shape[3:], generator=torch.Generator().manual_seed(seed),
                         dtype=torch.float64)

    def grads(dtype, layout):
        xs = [x.to(dtype) for x in inputs]
        xs[:2] = [x.contiguous(memory_format=layout) for x in xs[:2]]
        xs = [x.requires_grad_() for x in xs]
        fn = cpu.flow_warp if dtype == torch.float32 else reference.flow_warp
        (fn(*xs) * weight.to(dtype)).sum().backward()
        return [x.grad for x in xs]

    with reported_seed(seed):
        got, again = grads(torch.float32, torch.channels_last), grads(torch.float32, torch.channels_last)
        want = grads(torch.float64, torch.contiguous_format)
        for name, a, b, w in zip(["start", "end", "flow", "t"], got, again, want):
            assert torch.equal(a, b), name
            tol = 1e-5 if name in ("start", "end") else 2e-5 * shape[1] * (shape[3] * shape[4] if name == "t" else 1)
            torch.testing.assert_close(a.double(), w, rtol=1e-4, atol=tol, msg=name)
        assert all(g.is_contiguous(memory_format=torch.channels_last) for g in got[:2])


def test_deterministic_backward():
    """Two backward passes give bit-identical gradients."""
    inputs = flow_warp_inputs((1, 8, 4, 9, 10), seed=31)

    def grads():
        xs = [x.float().requires_grad_() for x in inputs]
        cpu.flow_warp(*xs).square().sum().backward()
        return [x.grad for x in xs]

    for a, b in zip(grads(), grads()):
        assert torch.equal(a, b)


def test_use_backend_routes_public_ops():
    (start, end, flow, t) = [x.float().requires_grad_() for x in flow_warp_inputs((1, 3, 2, 4, 5), 1)]
    x, fused, w, b = [v.float().requires_grad_() for v in saf_inputs((1, 3, 2, 4, 5, 6), 1)]
    (y, cb, tw, tb), s = tail_inputs((1, 3, 2, 4, 5, 2), 1)
    with ops.use_backend("cpu"):
        assert ops.resolve("cpu")[0] == "cpu"
        outs = {
            "flow_warp": ops.flow_warp(start, end, flow, t),
            "saf_modulate": ops.saf_modulate(x, fused, w.reshape(6, 6, 1, 1, 1), b),
            "upsample_tail": ops.upsample_tail(y.float().requires_grad_(), cb.float(), s,
                                                       tw.float(), tb.float()),
        }
    for name, out in outs.items():
        assert f"dnerv_fast_{name}" in type(out.grad_fn).__name__   # the custom op's autograd node
    torch.testing.assert_close(outs["flow_warp"], reference.flow_warp(start, end, flow, t),
                               atol=1e-5, rtol=1e-4)


def test_mixed_dtypes_fall_back():
    from dnerv_fast.ops import registry
    x, fused, w, b = saf_inputs((1, 2, 2, 3, 3, 4), 2)
    assert registry.not_supported_reasons("cpu", "saf_modulate", (x.float(), fused.double(), w, b))
    assert registry.not_supported_reasons("cpu", "saf_modulate", (x, fused, w, None)) == []
