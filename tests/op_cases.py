"""Inputs of the fused ops and the forward / backward parity check, shared by every test of a
backend (tests/test_ops_parity.py runs them over all backends) and by the benchmarks."""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from dnerv_fast.ops import reference


@dataclass(frozen=True)
class Tolerance:
    """``atol``, ``rtol`` of a fast backend against the reference at one dtype; gradients get
    ``grad`` times more (they sum many rounded terms)."""

    atol: float
    rtol: float
    grad: float = 1.0


# Half types: the reference itself rounds at every step, so it runs in float32 on the same
# (half-rounded) inputs. The keys are every dtype a parity test runs at.
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float64: Tolerance(1e-10, 1e-9),
    torch.float32: Tolerance(1e-5, 1e-4, grad=4),   # flow grads sum C (up to 64) products
    torch.float16: Tolerance(2e-2, 1e-2, grad=4),
    torch.bfloat16: Tolerance(8e-2, 4e-2, grad=4),
}
HALF = (torch.float16, torch.bfloat16)

# Odd sizes on purpose; the last case has T != 8 and one pixel rows/cols.
WARP_SHAPES = [(1, 3, 8, 4, 5), (2, 5, 3, 7, 9), (1, 16, 8, 13, 11), (2, 4, 5, 1, 6)]
SAF_SHAPES = [(1, 3, 8, 4, 5, 6), (2, 7, 3, 5, 9, 4), (1, 33, 8, 3, 7, 64)]  # B,C,T,H,W,K
TAIL_SHAPES = [(1, 3, 8, 4, 5, 2), (2, 5, 3, 3, 7, 4), (1, 6, 8, 2, 3, 1)]   # B,C,T,H,W,s

SEED_ENV = "DNERV_TEST_SEED"


def fresh_seed() -> int:
    """A new random seed for one case (``$DNERV_TEST_SEED`` replays a failing one)."""
    return int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1, 2**31))


@contextlib.contextmanager
def reported_seed(seed: int) -> Iterator[None]:
    """Name ``seed`` in the message of a failing assertion, with how to replay it."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n(seed {seed}; replay with {SEED_ENV}={seed})") from None


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def flow_warp_inputs(shape: Sequence[int], seed: int, flow_scale: float = 3.0) -> list[torch.Tensor]:
    """start, end, flow, t in float64 on CPU; flows reach well outside the frame."""
    B, C, T, H, W = shape
    g = _gen(seed)
    flow = _rand(g, B, 4, T, H, W, scale=flow_scale)
    # Keep sample points off exact integer grid lines, where bilinear gradients are not unique.
    flow = flow + 0.25 * (flow.frac().abs() < 1e-3)
    return [_rand(g, B, C, H, W), _rand(g, B, C, H, W), flow, torch.rand(B, T, generator=g, dtype=torch.float64)]


def saf_inputs(shape: Sequence[int], seed: int) -> list[torch.Tensor]:
    """x, fused, weight, bias in float64 on CPU."""
    B, C, T, H, W, K = shape
    g = _gen(seed)
    return [_rand(g, B, C, T, H, W), _rand(g, B, K, T, H, W), _rand(g, 2 * C, K, scale=K ** -0.5),
            _rand(g, 2 * C, scale=0.1)]


def tail_inputs(shape: Sequence[int], seed: int) -> tuple[list[torch.Tensor], int]:
    """(y, conv_bias, tfc_weight, tfc_bias) and the scale."""
    B, C, T, H, W, s = shape
    g = _gen(seed)
    return [_rand(g, B, C * s * s, T, H, W), _rand(g, C * s * s, scale=0.1),
            _rand(g, C * T, T, scale=T ** -0.5), _rand(g, C * T, scale=0.1)], s


def op_args(op: str, shape: Sequence[int], seed: int, **kw: float) -> list:
    """The positional arguments of ``op`` (float64, CPU): the scale sits third in upsample_tail's."""
    if op == "flow_warp":
        return flow_warp_inputs(shape, seed, **kw)
    if op == "saf_modulate":
        return saf_inputs(shape, seed)
    (y, cb, tw, tb), s = tail_inputs(shape, seed)
    return [y, cb, s, tw, tb]


def moved(args: Sequence, device: str | torch.device, dtype: torch.dtype) -> list:
    """``args`` with every tensor on ``device`` at ``dtype`` (other arguments unchanged)."""
    return [a.to(device, dtype) if isinstance(a, torch.Tensor) else a for a in args]


def off_grid(flow: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round flow to ``dtype`` and move values within 0.05 of a whole pixel off it by 0.25.

    A sample point on a pixel row / column is a kink of bilinear interpolation, where two
    implementations may legitimately pick different one-sided gradients; the inputs keep
    float64 flows off the grid, but rounding to a half type can put them back on it.
    """
    f = flow.to(dtype).double()
    for _ in range(4):
        f = torch.where((f - f.round()).abs() < 0.05, (f + 0.25).to(dtype).double(), f)
    return f


def strided(x: torch.Tensor) -> torch.Tensor:
    """Same values and autograd path, a non-contiguous layout (last two dims swapped)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        return x
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Channels-last 4-D / 5-D tensors (what the CPU keyframe encoder and a channels-last conv
    give); other arguments unchanged."""
    if isinstance(x, torch.Tensor) and x.dim() in (4, 5):
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    return x


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


def flow_warp_exact(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor,
                    t: torch.Tensor) -> torch.Tensor:
    """flow_warp reference that keeps float64 in float64 (the ground truth there)."""
    tt = t[:, None, :, None, None]
    return (1 - tt) * _warp_one_exact(start, flow[:, 0:2]) + tt * _warp_one_exact(end, flow[:, 2:4])


def reference_op(op: str, dtype: torch.dtype) -> Callable[..., torch.Tensor]:
    """The ground truth of ``op`` at ``dtype``."""
    if op == "flow_warp" and dtype == torch.float64:
        return flow_warp_exact
    return getattr(reference, op)


def assert_parity(fast: Callable[..., torch.Tensor], ref: Callable[..., torch.Tensor],
                  inputs: Sequence[torch.Tensor | int | None], dtype: torch.dtype,
                  device: str = "cpu", backward: bool = True,
                  wanted: set[int] | None = None) -> None:
    """Compare forward outputs and input gradients of ``fast`` and ``ref`` at ``dtype``.

    Tensors are cast to ``dtype`` once, so both sides see identical rounded inputs; for half
    types the reference runs in float32 on those inputs (it is the better answer). Without
    ``backward`` both run under ``no_grad`` (the decoding path, which may take other kernels);
    with it only the inputs in ``wanted`` (default: all) require gradients, and the others
    must get none.
    """
    tol = TOLERANCES[dtype]
    ref_dtype = torch.float32 if dtype in HALF else dtype

    def prepare(target: torch.dtype) -> list:
        out = []
        for i, x in enumerate(inputs):
            if isinstance(x, torch.Tensor):
                grad = backward and (wanted is None or i in wanted)
                x = x.to(dtype).to(device=device, dtype=target).detach().requires_grad_(grad)
            out.append(x)
        return out

    fast_in, ref_in = prepare(dtype), prepare(ref_dtype)
    with torch.set_grad_enabled(backward):
        out_fast, out_ref = fast(*fast_in), ref(*ref_in)
    assert out_fast.dtype == dtype, f"output dtype {out_fast.dtype} != {dtype}"
    assert out_fast.shape == out_ref.shape
    torch.testing.assert_close(out_fast.to(ref_dtype), out_ref, atol=tol.atol, rtol=tol.rtol)
    if not backward:
        return
    g = torch.Generator().manual_seed(1234)
    grad_out = torch.randn(out_ref.shape, generator=g, dtype=torch.float64).to(dtype)
    out_fast.backward(grad_out.to(device))
    out_ref.backward(grad_out.to(device=device, dtype=ref_dtype))
    for i, (a, b) in enumerate(zip(fast_in, ref_in)):
        if not isinstance(a, torch.Tensor):
            continue
        if not a.requires_grad:
            assert a.grad is None, f"a gradient for input {i}, which does not require one"
            continue
        assert a.grad is not None, f"no gradient for input {i}"
        torch.testing.assert_close(a.grad.to(ref_dtype), b.grad, atol=tol.atol * tol.grad,
                                   rtol=tol.rtol * tol.grad, msg=lambda m, i=i: f"gradient of input {i}: {m}")
