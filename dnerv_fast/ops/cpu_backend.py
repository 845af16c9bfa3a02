"""CPU backend: the fused C++ kernels of ``dnerv_fast/csrc/cpu_ops.cpp`` (built on first use).

Deterministic, forward and backward: every scatter / reduction is owned by one thread and
summed in a fixed order. float16 / bfloat16 compute in float32 (saf_modulate through float32
tensors, the other ops inside the kernels).
"""
from __future__ import annotations

import torch

from . import _fused_functions as _k
from ._library import entry_points
from ._jit import cpu_extension

_HALF = (torch.float16, torch.bfloat16)

# When no autograd graph is being built (decoding), saf_modulate writes frames of at least
# this many pixels channels-last (channels_last_3d, same values): the 3x3 conv that follows
# runs in oneDNN's fastest layout, and upsample_tail reads that layout in place. Measured for
# UVG-M's block convs (fp32, 2 cores): 32x40 maps 78 -> 73 ms, 64x80 108 -> 86 ms, 128x160
# 179 -> 113 ms; 16x20 and smaller gain nothing. Training keeps the contiguous layout: its
# backward passes gained nothing from it.
CHANNELS_LAST_MIN_PIXELS = 1024


def load() -> None:
    """Build (first use) and import the extension; raises if it cannot be built here."""
    cpu_extension()


def flow_warp_forward(start, end, flow, t) -> torch.Tensor:
    return _k.flow_warp_forward(cpu_extension(), start, end, flow, t, True)


def flow_warp_backward(grad_out, start, end, flow, t, needs):
    return _k.flow_warp_backward(cpu_extension(), grad_out, start, end, flow, t, needs, True)


def saf_modulate_forward(x, fused, weight, bias, decoding: bool) -> torch.Tensor:
    """``decoding`` (no autograd graph is built): large frames come back channels-last."""
    channels_last = decoding and x.shape[-2] * x.shape[-1] >= CHANNELS_LAST_MIN_PIXELS
    if x.dtype in _HALF:  # the tiled GEMM runs on float32 / float64 only
        bias32 = bias.float() if bias is not None else None
        out = _k.saf_forward(cpu_extension(), x.float(), fused.float(), weight.float(), bias32, channels_last)
        return out.to(x.dtype)
    return _k.saf_forward(cpu_extension(), x, fused, weight, bias, channels_last)


def saf_modulate_backward(grad_out, x, fused, weight, bias, needs):
    if x.dtype in _HALF:
        return _k.saf_backward(cpu_extension(), grad_out.float(), x.float(), fused.float(), weight.float(),
                               bias.float() if bias is not None else None, needs)
    return _k.saf_backward(cpu_extension(), grad_out, x, fused, weight, bias, needs)


def upsample_tail_forward(y, conv_bias, scale: int, tfc_weight, tfc_bias) -> torch.Tensor:
    return _k.tail_forward(cpu_extension(), y, conv_bias, scale, tfc_weight, tfc_bias, True)


def upsample_tail_backward(grad_out, y, conv_bias, scale: int, tfc_weight, tfc_bias, needs):
    return _k.tail_backward(cpu_extension(), grad_out, y, conv_bias, scale, tfc_weight, tfc_bias, needs)


flow_warp, saf_modulate, upsample_tail = entry_points("cpu")
