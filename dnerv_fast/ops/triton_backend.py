"""Triton backend: autograd wrappers around the kernels in :mod:`dnerv_fast.kernels`.

Runs on CUDA tensors, and on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``,
which must be set before this module is imported). float64 and mixed-dtype calls are declined
(:func:`unsupported`) so the reference handles them. Backward passes are once-differentiable.
"""
from __future__ import annotations

import os

import torch
from torch.autograd.function import once_differentiable

from dnerv_fast.kernels import flow_warp as _warp
from dnerv_fast.kernels import saf as _saf
from dnerv_fast.kernels import upsample_tail as _tail

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def load() -> None:
    """Raise RuntimeError when neither a CUDA device nor the interpreter is available."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("Triton needs a CUDA device (or TRITON_INTERPRET=1 for CPU tensors)")


def unsupported(op: str, *args) -> str | None:
    """Why this call cannot run here, or None: the kernels take one of fp32/fp16/bf16 per op."""
    if op == "flow_warp":
        # Flow and t are read as fp32 whatever their type; the features must agree.
        start, end, flow, t = args
        if start.dtype != end.dtype:
            return f"start {start.dtype} and end {end.dtype} differ"
        if any(x.dtype not in _DTYPES for x in (start, flow, t)):
            return "float64 is not supported"
        return None
    dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor)}
    if len(dtypes) > 1:
        return f"mixed dtypes {sorted(map(str, dtypes))}"
    if dtypes - set(_DTYPES):
        return "float64 is not supported"
    return None


class _FlowWarp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, start, end, flow, t):
        ctx.save_for_backward(start, end, flow, t)
        return _warp.flow_warp_forward(start, end, flow, t)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        start, end, flow, t = ctx.saved_tensors
        return _warp.flow_warp_backward(grad_out, start, end, flow, t, tuple(ctx.needs_input_grad))


class _SafModulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fused, weight, bias):
        ctx.save_for_backward(x, fused, weight, bias)
        return _saf.saf_forward(x, fused, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, fused, weight, bias = ctx.saved_tensors
        return _saf.saf_backward(grad_out, x, fused, weight, bias, tuple(ctx.needs_input_grad))


class _UpsampleTail(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, conv_bias, scale, tfc_weight, tfc_bias):
        ctx.save_for_backward(y, conv_bias, tfc_weight, tfc_bias)
        ctx.scale = scale
        return _tail.tail_forward(y, conv_bias, scale, tfc_weight, tfc_bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        y, conv_bias, tfc_weight, tfc_bias = ctx.saved_tensors
        needs = ctx.needs_input_grad
        gy, gcb, gw, gb = _tail.tail_backward(grad_out, y, conv_bias, ctx.scale, tfc_weight,
                                              tfc_bias, (needs[0], needs[1], needs[3], needs[4]))
        return gy, gcb, None, gw, gb


def flow_warp(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    """See :func:`dnerv_fast.ops.reference.flow_warp`.

    The backward pass accumulates with atomic adds, so on a GPU the gradients of start, end,
    flow and t are not bitwise reproducible between runs (forward is deterministic).
    """
    return _FlowWarp.apply(start, end, flow, t)


def saf_modulate(x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    """See :func:`dnerv_fast.ops.reference.saf_modulate` (gamma and beta never reach memory)."""
    return _SafModulate.apply(x, fused, weight, bias)


def upsample_tail(y: torch.Tensor, conv_bias: torch.Tensor | None, scale: int,
                  tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None) -> torch.Tensor:
    """See :func:`dnerv_fast.ops.reference.upsample_tail` (deterministic backward)."""
    return _UpsampleTail.apply(y, conv_bias, scale, tfc_weight, tfc_bias)
