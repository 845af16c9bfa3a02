"""CUDA backend: the kernels of ``dnerv_fast/csrc/cuda_*.cu`` (plain nvcc, no torch headers) bound by
``dnerv_fast/csrc/cuda_binding.cpp``, built on first use.

flow_warp and upsample_tail run every float type (half types accumulate in float32). The SAF
GEMM has no tensor-core path, so it declares float32 / float64 only (its capabilities in
:data:`dnerv_fast.ops.registry.BACKENDS`): a half-type SAF call under ``use_backend("cuda")``
runs the reference (cuBLAS tensor-core GEMMs), and ``auto`` picks Triton first anyway.

Nondeterminism: the flow_warp feature gradients (bilinear scatter) and the upsample_tail
weight / bias gradients are summed with atomicAdd, so their last bits can vary run to run.
Forward passes and the other gradients are deterministic.
"""
from __future__ import annotations

import torch

from . import reference
from ._jit import extension
from .dispatch import pinned

MAX_GRID_YZ = 65535  # CUDA grid y / z limit (batch and batch*channels sit there)


def load() -> None:
    """Raise unless torch has CUDA and a GPU is visible; then build / import the extension."""
    if torch.version.cuda is None:
        raise RuntimeError("this torch build has no CUDA support")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA GPU is visible")
    extension("cuda")


def limits(op: str, *args) -> list[str]:
    """Shapes beyond the kernels' launch limits (what it runs otherwise is registry data)."""
    if op == "upsample_tail":
        y, _, scale = args[:3]
        B, CSS, T = y.shape[:3]
        if T > extension("cuda").max_tail_t:
            return [f"T={T} above {extension('cuda').max_tail_t}"]
        if scale * scale > 64 or B * (CSS // (scale * scale)) > MAX_GRID_YZ:
            return ["scale or batch*channels too large"]
    elif args[0].shape[0] > MAX_GRID_YZ:
        return ["batch too large"]
    return []


def _opt(x: torch.Tensor | None) -> torch.Tensor | None:
    return x.contiguous() if x is not None else None


def flow_warp_forward(start, end, flow, t) -> torch.Tensor:
    return extension("cuda").flow_warp_forward(start.contiguous(), end.contiguous(), flow.contiguous(),
                                               t.contiguous())


def flow_warp_backward(grad_out, start, end, flow, t, needs):
    need_features, need_flow_t = needs[0] or needs[1], needs[2] or needs[3]
    grads = extension("cuda").flow_warp_backward(grad_out.contiguous(), start.contiguous(), end.contiguous(),
                                                 flow.contiguous(), t.contiguous(), need_features=need_features,
                                                 need_flow_t=need_flow_t)
    return [g if need else None for g, need in zip(grads, needs)]


def _saf(x, fused, weight, bias, *, with_beta: bool) -> torch.Tensor:
    return extension("cuda").saf_forward(x.contiguous(), fused.contiguous(), weight.contiguous(), _opt(bias),
                                         with_beta=with_beta, channels_last=False)


def saf_modulate_forward(x, fused, weight, bias, *, decoding: bool = False) -> torch.Tensor:
    return _saf(x, fused, weight, bias, with_beta=True)


def saf_modulate_backward(grad_out, x, fused, weight, bias, needs):
    def grad_x(g, f, w_gamma, b_gamma):
        return _saf(g, f, w_gamma, b_gamma, with_beta=False)
    return reference.saf_gradients(grad_x, grad_out, x, fused, weight, bias, needs)


def upsample_tail_forward(y, conv_bias, scale: int, tfc_weight, tfc_bias) -> torch.Tensor:
    return extension("cuda").upsample_tail_forward(y.contiguous(), _opt(conv_bias), scale,
                                                   tfc_weight.contiguous(), _opt(tfc_bias))


def upsample_tail_backward(grad_out, y, conv_bias, scale: int, tfc_weight, tfc_bias, needs):
    """Recomputes GELU(PixelShuffle(y + b)) from y instead of storing it."""
    grads = extension("cuda").upsample_tail_backward(grad_out.contiguous(), y.contiguous(), _opt(conv_bias),
                                                     scale, tfc_weight.contiguous())
    return [g if need else None for g, need in zip(grads, needs)]



# The public ops with this backend in force (tests and benchmarks that name a backend).
flow_warp, saf_modulate, upsample_tail = pinned("cuda")
