"""Parity of the CPU backend (csrc/cpu_ops.cpp) with the reference ops, forward and backward.

Covers odd sizes, one-pixel axes, flows far outside the frame, missing biases, non-contiguous
views, all four float dtypes, gradcheck in float64, and routing through the public API.
"""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import dnerv_fast.ops as ops
from dnerv_fast.ops import reference
from op_cases import (SAF_SHAPES, TAIL_SHAPES, WARP_SHAPES, assert_parity, flow_warp_inputs,
                      saf_inputs, tail_inputs)

cpu = pytest.importorskip("dnerv_fast.ops.cpu_backend")

RANDOM_SEED = random.randrange(1 << 30)
print(f"test_ops_cpu: random seed {RANDOM_SEED}")  # shown with -s; repeated in the test ids
SEEDS = [0, 7, RANDOM_SEED]
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    try:
        cpu.load()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the CPU extension does not build: {exc}")


def _warp_one_exact(feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """reference.warp_one without its float32 casts (the reference computes float64 in float32)."""
    B, C, H, W = feature.shape
    T = flow.shape[2]
    kw = {"dtype": flow.dtype, "device": flow.device}
    ys, xs = torch.meshgrid(torch.arange(H, **kw), torch.arange(W, **kw), indexing="ij")
    coords = torch.stack([xs, ys], dim=-1) + flow.permute(0, 2, 3, 4, 1)
    scale = torch.tensor([max(W - 1, 1), max(H - 1, 1)], **kw)
    grid = (2 * coords / scale - 1).reshape(B * T, H, W, 2)
    frames = feature.unsqueeze(1).expand(B, T, C, H, W).reshape(B * T, C, H, W)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)


def flow_warp_exact(start, end, flow, t):
    """flow_warp reference that keeps float64 in float64 (used as ground truth there)."""
    tt = t[:, None, :, None, None]
    return (1 - tt) * _warp_one_exact(start, flow[:, 0:2]) + tt * _warp_one_exact(end, flow[:, 2:4])


def warp_reference(dtype: torch.dtype):
    return flow_warp_exact if dtype == torch.float64 else reference.flow_warp


def off_grid(flow: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round flow to ``dtype`` and move values that became whole pixels off the grid lines,
    where bilinear sampling has a kink and the two sides' gradients legitimately differ."""
    f = flow.to(dtype).double()
    for _ in range(4):
        f = torch.where(f.frac().abs() < 1e-3, (f + 0.25).to(dtype).double(), f)
    return f


def _ids(values) -> list[str]:
    return [str(v).replace("torch.", "") for v in values]


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", WARP_SHAPES, ids=str)
def test_flow_warp_parity(shape, dtype, seed):
    inputs = flow_warp_inputs(shape, seed)
    inputs[2] = off_grid(inputs[2], dtype)
    assert_parity(cpu.flow_warp, warp_reference(dtype), inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_flow_warp_far_outside(dtype):
    """Flows of tens of pixels: almost every sample is clamped to the border."""
    inputs = flow_warp_inputs((2, 3, 4, 6, 7), seed=11, flow_scale=25.0)
    assert_parity(cpu.flow_warp, warp_reference(dtype), inputs, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", [(2, 37, 3, 7, 9), (1, 64, 8, 16, 20), (1, 5, 2, 1, 6)], ids=str)
def test_flow_warp_channels_last_features(shape, dtype):
    """Channels-last start/end (what the CPU keyframe encoder gives) are read in place with a
    channel-vectorised loop; odd sizes leave partial pixel blocks. Gradients are compared in
    float64 only: the t gradient sums C*H*W terms here, beyond the small-size float32
    tolerance (the backward itself is the contiguous one, tested above at every dtype)."""
    start, end, flow, t = flow_warp_inputs(shape, RANDOM_SEED)
    start, end = (x.contiguous(memory_format=torch.channels_last) for x in (start, end))
    assert not start.is_contiguous()
    assert_parity(cpu.flow_warp, warp_reference(dtype), [start, end, off_grid(flow, dtype), t], dtype,
                  backward=dtype == torch.float64)


def test_flow_warp_non_contiguous():
    feat = torch.randn(1, 5, 2, 6, 7, dtype=torch.float64)
    start, end = feat[:, :, 0], feat[:, :, 1]
    flow = off_grid(torch.randn(1, 7, 6, 4, 3, dtype=torch.float64) * 3, torch.float64).permute(0, 3, 4, 2, 1)
    t = torch.rand(3, 2, dtype=torch.float64)[:, :1].t()
    assert not (start.is_contiguous() or flow.is_contiguous() or t.is_contiguous())
    torch.testing.assert_close(cpu.flow_warp(start, end, flow, t), flow_warp_exact(start, end, flow, t))


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", SAF_SHAPES, ids=str)
def test_saf_modulate_parity(shape, dtype, seed):
    assert_parity(cpu.saf_modulate, reference.saf_modulate, saf_inputs(shape, seed), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_saf_modulate_no_bias_many_channels(dtype):
    """C above one channel tile (128) and P above one pixel tile (512), no bias."""
    x, fused, weight, _ = saf_inputs((1, 130, 2, 17, 19, 8), seed=3)
    assert_parity(cpu.saf_modulate, reference.saf_modulate, [x, fused, weight, None], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", [(2, 5, 3, 33, 37, 6), (1, 130, 2, 32, 32, 8)], ids=str)
def test_saf_modulate_channels_last_output(shape, dtype):
    """Without an autograd graph (decoding), frames of >= CHANNELS_LAST_MIN_PIXELS come back
    channels_last_3d with the same values (odd sizes: partial pixel tiles; 130 channels: a
    partial channel tile). With a graph (training) the output stays contiguous."""
    H, W = shape[3:5]
    assert H * W >= cpu.CHANNELS_LAST_MIN_PIXELS
    inputs = saf_inputs(shape, seed=RANDOM_SEED)
    with torch.no_grad():
        out = cpu.saf_modulate(*[v.to(dtype) for v in inputs])
        assert out.is_contiguous(memory_format=torch.channels_last_3d) and not out.is_contiguous()
        assert_parity(cpu.saf_modulate, reference.saf_modulate, inputs, dtype, backward=False)
    assert cpu.saf_modulate(*[v.to(dtype).requires_grad_() for v in inputs]).is_contiguous()


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", [(2, 5, 3, 7, 9, 2), (1, 3, 8, 4, 5, 3), (1, 1, 2, 3, 4, 1)], ids=str)
def test_upsample_tail_channels_last_input(shape, dtype):
    """y in channels_last_3d (what the 3x3 conv gives after a channels-last saf_modulate) is
    read in place, forward and backward."""
    (y, cb, tw, tb), s = tail_inputs(shape, seed=RANDOM_SEED)
    y = y.contiguous(memory_format=torch.channels_last_3d)
    assert_parity(cpu.upsample_tail, reference.upsample_tail, [y, cb, s, tw, tb], dtype)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", TAIL_SHAPES, ids=str)
def test_upsample_tail_parity(shape, dtype, seed):
    (y, cb, tw, tb), s = tail_inputs(shape, seed)
    assert_parity(cpu.upsample_tail, reference.upsample_tail, [y, cb, s, tw, tb], dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_upsample_tail_no_biases(dtype):
    (y, _, tw, _), s = tail_inputs((2, 3, 4, 3, 5, 3), seed=5)
    assert_parity(cpu.upsample_tail, reference.upsample_tail, [y, None, s, tw, None], dtype)


def _gradcheck(fn, *inputs) -> None:
    inputs = [x.detach().requires_grad_() if isinstance(x, torch.Tensor) else x for x in inputs]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_flow_warp():
    start, end, flow, t = flow_warp_inputs((1, 2, 3, 4, 5), seed=21)
    _gradcheck(cpu.flow_warp, start, end, off_grid(flow, torch.float64), t)


def test_gradcheck_saf_modulate():
    _gradcheck(cpu.saf_modulate, *saf_inputs((1, 3, 2, 3, 4, 5), seed=22))


def test_gradcheck_upsample_tail():
    (y, cb, tw, tb), s = tail_inputs((1, 2, 3, 2, 3, 2), seed=23)
    _gradcheck(cpu.upsample_tail, y, cb, s, tw, tb)


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
            "FlowWarpBackward": ops.flow_warp(start, end, flow, t),
            "SafModulateBackward": ops.saf_modulate(x, fused, w.reshape(6, 6, 1, 1, 1), b),
            "UpsampleTailBackward": ops.upsample_tail(y.float().requires_grad_(), cb.float(), s,
                                                       tw.float(), tb.float()),
        }
    for name, out in outs.items():
        assert type(out.grad_fn).__name__ == name
    torch.testing.assert_close(outs["FlowWarpBackward"], reference.flow_warp(start, end, flow, t),
                               atol=1e-5, rtol=1e-4)


def test_mixed_dtypes_fall_back():
    from dnerv_fast.ops import registry
    x, fused, w, b = saf_inputs((1, 2, 2, 3, 3, 4), 2)
    assert registry.not_supported_reasons("cpu", cpu, "saf_modulate", (x.float(), fused.double(), w, b))
    assert registry.not_supported_reasons("cpu", cpu, "saf_modulate", (x, fused, w, None)) == []
