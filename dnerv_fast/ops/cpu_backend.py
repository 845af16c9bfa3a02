"""CPU backend: the fused C++ kernels of ``csrc/cpu_ops.cpp`` (built on first use).

Deterministic, forward and backward: every scatter / reduction is owned by one thread and
summed in a fixed order. float16 / bfloat16 compute in float32 (saf_modulate through float32
tensors, the other ops inside the kernels).
"""
from __future__ import annotations

import torch

from ._fused_functions import FlowWarp, SafModulate, UpsampleTail, mixed_dtypes
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


def unsupported(op: str, *args) -> str | None:
    """Decline calls whose tensors mix dtypes (the kernels take one storage type)."""
    return mixed_dtypes(args)


def flow_warp(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return FlowWarp.apply(cpu_extension(), start, end, flow, t, True)


def saf_modulate(x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    builds_graph = torch.is_grad_enabled() and any(
        v is not None and v.requires_grad for v in (x, fused, weight, bias))
    channels_last = not builds_graph and x.shape[-2] * x.shape[-1] >= CHANNELS_LAST_MIN_PIXELS
    if x.dtype in _HALF:  # the tiled GEMM runs on float32 / float64 only
        bias32 = bias.float() if bias is not None else None
        out = SafModulate.apply(cpu_extension(), x.float(), fused.float(), weight.float(), bias32, channels_last)
        return out.to(x.dtype)
    return SafModulate.apply(cpu_extension(), x, fused, weight, bias, channels_last)


def upsample_tail(y: torch.Tensor, conv_bias: torch.Tensor | None, scale: int,
                  tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None) -> torch.Tensor:
    return UpsampleTail.apply(cpu_extension(), y, conv_bias, scale, tfc_weight, tfc_bias, True)
