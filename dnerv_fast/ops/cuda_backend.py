"""CUDA backend: the kernels of ``csrc/cuda_*.cu`` (plain nvcc, no torch headers) bound by
``csrc/cuda_binding.cpp``, built on first use.

Nondeterminism: the flow_warp feature gradients (bilinear scatter) and the upsample_tail
weight / bias gradients are summed with atomicAdd, so their last bits can vary run to run.
Forward passes and the other gradients are deterministic.
"""
from __future__ import annotations

import torch

from ._fused_functions import FlowWarp, SafModulate, UpsampleTail, mixed_dtypes
from ._jit import cuda_extension

MAX_GRID_YZ = 65535  # CUDA grid y / z limit (batch and batch*channels sit there)


def load() -> None:
    """Raise unless torch has CUDA and a GPU is visible; then build / import the extension."""
    if torch.version.cuda is None:
        raise RuntimeError("this torch build has no CUDA support")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA GPU is visible")
    cuda_extension()


def unsupported(op: str, *args) -> str | None:
    """Decline mixed dtypes and shapes beyond the kernels' launch limits."""
    reason = mixed_dtypes(args)
    if reason:
        return reason
    if op == "upsample_tail":
        y, _, scale = args[:3]
        B, CSS, T = y.shape[:3]
        if T > cuda_extension().max_tail_t:
            return f"T={T} above {cuda_extension().max_tail_t}"
        if scale * scale > 64 or B * (CSS // (scale * scale)) > MAX_GRID_YZ:
            return "scale or batch*channels too large"
    elif args[0].shape[0] > MAX_GRID_YZ:
        return "batch too large"
    return None


def flow_warp(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return FlowWarp.apply(cuda_extension(), start, end, flow, t)


def saf_modulate(x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    return SafModulate.apply(cuda_extension(), x, fused, weight, bias)


def upsample_tail(y: torch.Tensor, conv_bias: torch.Tensor | None, scale: int,
                  tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None) -> torch.Tensor:
    return UpsampleTail.apply(cuda_extension(), y, conv_bias, scale, tfc_weight, tfc_bias)
