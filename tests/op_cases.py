"""Random inputs and a forward+backward parity check shared by every backend's tests."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

# (atol, rtol) of a fast backend against the float64-free reference at the same dtype.
# Half types: the reference itself rounds at every step, so compare against the reference
# run in float32 on the same (half-rounded) inputs.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (1e-5, 1e-4),
    torch.float16: (2e-2, 1e-2),
    torch.bfloat16: (8e-2, 4e-2),
}

# Odd sizes on purpose; the last case has T != 8 and one pixel rows/cols.
WARP_SHAPES = [(1, 3, 8, 4, 5), (2, 5, 3, 7, 9), (1, 16, 8, 13, 11), (2, 4, 5, 1, 6)]
SAF_SHAPES = [(1, 3, 8, 4, 5, 6), (2, 7, 3, 5, 9, 4), (1, 33, 8, 3, 7, 64)]  # B,C,T,H,W,K
TAIL_SHAPES = [(1, 3, 8, 4, 5, 2), (2, 5, 3, 3, 7, 4), (1, 6, 8, 2, 3, 1)]   # B,C,T,H,W,s


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


def assert_parity(fast: Callable[..., torch.Tensor], ref: Callable[..., torch.Tensor],
                  inputs: Sequence[torch.Tensor | int | None], dtype: torch.dtype,
                  device: str = "cpu", backward: bool = True) -> None:
    """Compare forward outputs and input gradients of ``fast`` and ``ref`` at ``dtype``.

    Tensors are cast to ``dtype`` once, so both sides see identical rounded inputs; for half
    types the reference runs in float32 on those inputs (it is the better answer).
    """
    atol, rtol = TOLERANCES[dtype]
    ref_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

    def prepare(target: torch.dtype) -> list:
        out = []
        for x in inputs:
            if isinstance(x, torch.Tensor):
                x = x.to(dtype).to(device=device, dtype=target).detach().requires_grad_(backward)
            out.append(x)
        return out

    fast_in, ref_in = prepare(dtype), prepare(ref_dtype)
    out_fast, out_ref = fast(*fast_in), ref(*ref_in)
    assert out_fast.dtype == dtype, f"output dtype {out_fast.dtype} != {dtype}"
    assert out_fast.shape == out_ref.shape
    torch.testing.assert_close(out_fast.to(ref_dtype), out_ref, atol=atol, rtol=rtol)
    if not backward:
        return
    g = torch.Generator().manual_seed(1234)
    grad_out = torch.randn(out_ref.shape, generator=g, dtype=torch.float64).to(dtype)
    out_fast.backward(grad_out.to(device))
    out_ref.backward(grad_out.to(device=device, dtype=ref_dtype))
    scale = 4 if dtype in (torch.float16, torch.bfloat16) else 1  # gradients sum many rounded terms
    for i, (a, b) in enumerate(zip(fast_in, ref_in)):
        if isinstance(a, torch.Tensor):
            assert a.grad is not None, f"no gradient for input {i}"
            torch.testing.assert_close(a.grad.to(ref_dtype), b.grad, atol=atol * scale, rtol=rtol * scale,
                                       msg=lambda m: f"gradient of input {i}: {m}")
