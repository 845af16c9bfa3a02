"""Forward / backward kernels of the fused ops over a compiled kernel extension (CPU or CUDA).

Both extensions expose the same functions (see dnerv_fast/csrc: cpu_ops.cpp, cuda_binding.cpp):
``flow_warp_forward/backward``, ``saf_forward`` and ``upsample_tail_forward/backward``; the
extension module is the first argument here. Autograd is added by :mod:`._library`.
"""
from __future__ import annotations

from types import ModuleType

import torch


def _opt(x: torch.Tensor | None) -> torch.Tensor | None:
    return x.contiguous() if x is not None else None


def _keep(needed: bool, grad: torch.Tensor | None) -> torch.Tensor | None:
    return grad if needed else None


def _channels_last_only(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def flow_warp_forward(ext: ModuleType, start, end, flow, t, reads_channels_last: bool = False):
    """``reads_channels_last``: the extension takes channels-last start and end as they are."""
    if not (reads_channels_last and _channels_last_only(start) and _channels_last_only(end)):
        start, end = start.contiguous(), end.contiguous()
    return ext.flow_warp_forward(start, end, flow.contiguous(), t.contiguous())


def flow_warp_backward(ext: ModuleType, grad_out, start, end, flow, t, needs,
                       reads_channels_last: bool = False):
    """``reads_channels_last``: the extension takes channels-last float32 start and end as
    they are (and gives their gradients channels-last)."""
    if not (reads_channels_last and start.dtype == torch.float32 and _channels_last_only(start)
            and _channels_last_only(end)):
        start, end = start.contiguous(), end.contiguous()
    gs, ge, gf, gt = ext.flow_warp_backward(
        grad_out.contiguous(), start, end, flow.contiguous(), t.contiguous(),
        needs[0] or needs[1], needs[2] or needs[3])
    return _keep(needs[0], gs), _keep(needs[1], ge), _keep(needs[2], gf), _keep(needs[3], gt)


def saf_forward(ext: ModuleType, x, fused, weight, bias, channels_last: bool = False):
    """GEMM with the modulation in its epilogue (``channels_last``: output in channels_last_3d)."""
    return ext.saf_forward(x.contiguous(), fused.contiguous(), weight.contiguous(), _opt(bias),
                           True, channels_last)


def saf_backward(ext: ModuleType, grad_out, x, fused, weight, bias, needs):
    """grad_x from the forward kernel (x * (1 + gamma) with grad_out in place of x, beta
    skipped); weight, fused and bias gradients from batched GEMMs on grad_out * x (the gamma
    half) and grad_out (the beta half). bmm on [B, C, P] views, where matmul and einsum would
    copy both operands into other layouts (UVG-XS step: 82 MB a call)."""
    B, C = x.shape[:2]
    x, fused, weight, grad_out = x.contiguous(), fused.contiguous(), weight.contiguous(), grad_out.contiguous()
    grad_x = grad_f = grad_w = grad_b = None
    if needs[0]:
        bias_g = bias[:C].contiguous() if bias is not None else None
        grad_x = ext.saf_forward(grad_out, fused, weight[:C].contiguous(), bias_g, False, False)
    if needs[1] or needs[2] or needs[3]:
        grad_beta = grad_out.reshape(B, C, -1)
        grad_gamma = (grad_out * x).reshape(B, C, -1)
        if needs[1]:
            w_t = weight.t().unsqueeze(0).expand(B, -1, -1)
            grad_f = torch.bmm(w_t[:, :, :C], grad_gamma).baddbmm_(w_t[:, :, C:], grad_beta)
            grad_f = grad_f.reshape(fused.shape)
        if needs[2]:
            f_t = fused.reshape(B, fused.shape[1], -1).transpose(1, 2)
            grad_w = torch.cat([torch.bmm(grad_gamma, f_t).sum(0), torch.bmm(grad_beta, f_t).sum(0)])
        if needs[3]:
            grad_b = torch.cat([grad_gamma.sum(dim=(0, 2)), grad_beta.sum(dim=(0, 2))])
    return grad_x, grad_f, grad_w, grad_b


def tail_forward(ext: ModuleType, y, conv_bias, scale: int, tfc_weight, tfc_bias,
                 reads_channels_last: bool = False):
    """``reads_channels_last``: the extension takes y in channels_last_3d as it is."""
    if not (reads_channels_last and y.is_contiguous(memory_format=torch.channels_last_3d)):
        y = y.contiguous()
    return ext.upsample_tail_forward(y, _opt(conv_bias), scale, tfc_weight.contiguous(), _opt(tfc_bias))


def tail_backward(ext: ModuleType, grad_out, y, conv_bias, scale: int, tfc_weight, tfc_bias, needs):
    """Recomputes GELU(PixelShuffle(y + b)) from y instead of storing it."""
    gy, gbc, gw, gbt = ext.upsample_tail_backward(grad_out.contiguous(), y.contiguous(), _opt(conv_bias),
                                                  scale, tfc_weight.contiguous())
    return _keep(needs[0], gy), _keep(needs[1], gbc), _keep(needs[2], gw), _keep(needs[3], gbt)
