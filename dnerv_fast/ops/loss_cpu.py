"""CPU backend of the fused training loss: ``dnerv_fast/csrc/cpu_loss.cpp`` (built on first use).

Vectorised through ``cpu_simd.h`` (16 floats a vector on AVX-512, 8 on AVX2), one plane
(frame, channel) per task, deterministic. float16 / bfloat16 compute in float32, float64 in
float64.
"""
from __future__ import annotations

import functools
from types import ModuleType

import torch

from ._jit import _build, cpu_march

SOURCES = ["cpu_loss.cpp"]


@functools.cache
def extension() -> ModuleType:
    """The compiled kernels (same flags as the other CPU kernels, see ``_jit.cpu_extension``)."""
    march = cpu_march()
    return _build("dnerv_fast_cpu_loss", SOURCES,
                  extra_cflags=["-O3", f"-march={march}", "-fopenmp", "-fno-trapping-math",
                                "-fno-math-errno"],
                  extra_ldflags=["-fopenmp"], what="cpu loss")


def load() -> None:
    extension()


def forward(out: torch.Tensor, ref: torch.Tensor, visible: torch.Tensor | None, taps: torch.Tensor,
            power: int, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(extension().ssim_loss_forward(out, ref, visible, taps, power, need_grad))


def backward(grad_sums: torch.Tensor, out: torch.Tensor, ref: torch.Tensor,
             visible: torch.Tensor | None, saved: torch.Tensor, taps: torch.Tensor,
             power: int) -> torch.Tensor:
    return extension().ssim_loss_backward(grad_sums, out, ref, visible, saved, taps, power)
