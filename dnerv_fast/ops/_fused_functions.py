"""Autograd Functions over a compiled kernel extension (the CPU or the CUDA one).

Both extensions expose the same functions (see csrc/cpu_ops.cpp and csrc/cuda_binding.cpp):
``flow_warp_forward/backward``, ``saf_forward`` and ``upsample_tail_forward/backward``. The
extension module is passed as the first (non-tensor) argument. Second derivatives are not
supported (``once_differentiable``).
"""
from __future__ import annotations

from types import ModuleType

import torch
from torch.autograd.function import once_differentiable


def _opt(x: torch.Tensor | None) -> torch.Tensor | None:
    return x.contiguous() if x is not None else None


def _keep(needed: bool, grad: torch.Tensor | None) -> torch.Tensor | None:
    return grad if needed else None


def _channels_last_only(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class FlowWarp(torch.autograd.Function):
    """``reads_channels_last``: the extension's forward takes channels-last start and end as
    they are (no copy); its backward takes contiguous ones."""

    @staticmethod
    def forward(ctx, ext: ModuleType, start, end, flow, t, reads_channels_last: bool = False):
        if not (reads_channels_last and _channels_last_only(start) and _channels_last_only(end)):
            start, end = start.contiguous(), end.contiguous()
        flow, t = flow.contiguous(), t.contiguous()
        ctx.ext = ext
        ctx.save_for_backward(start, end, flow, t)
        return ext.flow_warp_forward(start, end, flow, t)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        need = ctx.needs_input_grad[1:]
        start, end, flow, t = ctx.saved_tensors
        gs, ge, gf, gt = ctx.ext.flow_warp_backward(
            grad_out.contiguous(), start.contiguous(), end.contiguous(), flow, t,
            need[0] or need[1], need[2] or need[3])
        return None, _keep(need[0], gs), _keep(need[1], ge), _keep(need[2], gf), _keep(need[3], gt), None


class SafModulate(torch.autograd.Function):
    """Forward: GEMM with the modulation in its epilogue. Backward: grad_x from the same kernel
    (x * (1 + gamma) with grad_out in place of x, beta skipped); weight, fused and bias
    gradients from torch matmuls on grad_style = [grad_out * x; grad_out]."""

    @staticmethod
    def forward(ctx, ext: ModuleType, x, fused, weight, bias, channels_last: bool = False):
        x, fused, weight, bias = x.contiguous(), fused.contiguous(), weight.contiguous(), _opt(bias)
        ctx.ext = ext
        ctx.save_for_backward(x, fused, weight, bias)
        return ext.saf_forward(x, fused, weight, bias, True, channels_last)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, fused, weight, bias = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        B, C = x.shape[:2]
        grad_out = grad_out.contiguous()
        grad_x = grad_f = grad_w = grad_b = None
        if need[0]:
            bias_g = bias[:C].contiguous() if bias is not None else None
            grad_x = ctx.ext.saf_forward(grad_out, fused, weight[:C].contiguous(), bias_g, False, False)
        if need[1] or need[2] or need[3]:
            grad_style = torch.cat([grad_out * x, grad_out], dim=1).reshape(B, 2 * C, -1)
            if need[1]:
                grad_f = torch.matmul(weight.t(), grad_style).reshape(fused.shape)
            if need[2]:
                grad_w = torch.einsum("bop,bkp->ok", grad_style, fused.reshape(B, fused.shape[1], -1))
            if need[3]:
                grad_b = grad_style.sum(dim=(0, 2))
        return None, grad_x, grad_f, grad_w, grad_b, None


class UpsampleTail(torch.autograd.Function):
    """Backward recomputes GELU(PixelShuffle(y + b)) from y instead of storing it.

    ``reads_channels_last``: the extension takes y in channels_last_3d as it is (no copy).
    """

    @staticmethod
    def forward(ctx, ext: ModuleType, y, conv_bias, scale: int, tfc_weight, tfc_bias,
                reads_channels_last: bool = False):
        if not (reads_channels_last and y.is_contiguous(memory_format=torch.channels_last_3d)):
            y = y.contiguous()
        conv_bias, tfc_weight, tfc_bias = _opt(conv_bias), tfc_weight.contiguous(), _opt(tfc_bias)
        ctx.ext, ctx.scale = ext, scale
        ctx.save_for_backward(y, conv_bias, tfc_weight)
        return ext.upsample_tail_forward(y, conv_bias, scale, tfc_weight, tfc_bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        y, conv_bias, tfc_weight = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        gy, gbc, gw, gbt = ctx.ext.upsample_tail_backward(grad_out.contiguous(), y, conv_bias, ctx.scale,
                                                          tfc_weight)
        return (None, _keep(need[0], gy), _keep(need[1], gbc), None, _keep(need[3], gw), _keep(need[4], gbt),
                None)


def mixed_dtypes(args) -> str | None:
    """Why a call cannot run on one storage type, or None."""
    dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor)}
    if len(dtypes) > 1:
        return "mixed dtypes " + ", ".join(sorted(str(d) for d in dtypes))
    return None
