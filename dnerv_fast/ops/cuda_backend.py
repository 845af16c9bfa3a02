"""CUDA backend: the kernels of ``dnerv_fast/csrc/cuda_*.cu`` (plain nvcc, no torch headers) bound by
``dnerv_fast/csrc/cuda_binding.cpp``, built on first use.

What runs where:

=============  ==========================  ===========================================
op             float32 / float64           float16 / bfloat16
=============  ==========================  ===========================================
flow_warp      CUDA kernels                CUDA kernels (fp32 accumulation)
saf_modulate   CUDA tiled GEMM (FMA)       the Triton kernel (tensor-core ``tl.dot``)
                                           where Triton loads, else the CUDA GEMM
upsample_tail  CUDA kernels                CUDA kernels (fp32 accumulation)
=============  ==========================  ===========================================

The CUDA SAF GEMM has no tensor-core path, so half types would run at fp32 FMA speed while
eager bf16 uses tensor-core GEMMs: those calls go to the Triton kernel instead.

Nondeterminism: the flow_warp feature gradients (bilinear scatter) and the upsample_tail
weight / bias gradients are summed with atomicAdd, so their last bits can vary run to run.
Forward passes and the other gradients are deterministic.
"""
from __future__ import annotations

from types import ModuleType

import torch

from . import _fused_functions as _k
from . import registry
from ._library import entry_points
from ._jit import cuda_extension

MAX_GRID_YZ = 65535  # CUDA grid y / z limit (batch and batch*channels sit there)
_HALF = (torch.float16, torch.bfloat16)


def load() -> None:
    """Raise unless torch has CUDA and a GPU is visible; then build / import the extension."""
    if torch.version.cuda is None:
        raise RuntimeError("this torch build has no CUDA support")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA GPU is visible")
    cuda_extension()


def limits(op: str, *args) -> list[str]:
    """Shapes beyond the kernels' launch limits (what it runs otherwise is registry data)."""
    if op == "upsample_tail":
        y, _, scale = args[:3]
        B, CSS, T = y.shape[:3]
        if T > cuda_extension().max_tail_t:
            return [f"T={T} above {cuda_extension().max_tail_t}"]
        if scale * scale > 64 or B * (CSS // (scale * scale)) > MAX_GRID_YZ:
            return ["scale or batch*channels too large"]
    elif args[0].shape[0] > MAX_GRID_YZ:
        return ["batch too large"]
    return []


def flow_warp_forward(start, end, flow, t) -> torch.Tensor:
    return _k.flow_warp_forward(cuda_extension(), start, end, flow, t)


def flow_warp_backward(grad_out, start, end, flow, t, needs):
    return _k.flow_warp_backward(cuda_extension(), grad_out, start, end, flow, t, needs)


def _tensor_core_saf(x: torch.Tensor) -> ModuleType | None:
    """The Triton backend for a half-type SAF call, or None (fp32, or Triton cannot run)."""
    if x.dtype not in _HALF:
        return None
    try:
        return registry.load_backend("triton")
    except registry.BackendUnavailable:
        return None


def saf_modulate_forward(x, fused, weight, bias, decoding: bool) -> torch.Tensor:
    triton_backend = _tensor_core_saf(x)
    if triton_backend is not None:
        try:
            return triton_backend.saf_modulate_forward(x, fused, weight, bias, decoding)
        except triton_backend.LAUNCH_ERRORS as exc:  # Triton is out from now on; the CUDA GEMM serves
            registry.launch_failed("triton", "cuda", "saf_modulate", exc)
    return _k.saf_forward(cuda_extension(), x, fused, weight, bias)


def saf_modulate_backward(grad_out, x, fused, weight, bias, needs):
    triton_backend = _tensor_core_saf(x)
    if triton_backend is not None:
        try:
            return triton_backend.saf_modulate_backward(grad_out, x, fused, weight, bias, needs)
        except triton_backend.LAUNCH_ERRORS as exc:
            registry.launch_failed("triton", "cuda", "saf_modulate", exc)
    return _k.saf_backward(cuda_extension(), grad_out, x, fused, weight, bias, needs)


def upsample_tail_forward(y, conv_bias, scale: int, tfc_weight, tfc_bias) -> torch.Tensor:
    return _k.tail_forward(cuda_extension(), y, conv_bias, scale, tfc_weight, tfc_bias)


def upsample_tail_backward(grad_out, y, conv_bias, scale: int, tfc_weight, tfc_bias, needs):
    return _k.tail_backward(cuda_extension(), grad_out, y, conv_bias, scale, tfc_weight, tfc_bias, needs)


flow_warp, saf_modulate, upsample_tail = entry_points("cuda")
