"""CUDA backend of the fused training loss: ``dnerv_fast/csrc/cuda_loss.cu`` (plain nvcc, no
torch headers) bound by ``csrc/cuda_loss_binding.cpp``, built on first use.

float32 / float64 / float16 / bfloat16 (half types compute in float32). Deterministic: the
forward's per-block partial sums are added in a fixed order, the backward has no atomics.
"""
from __future__ import annotations

import functools
from types import ModuleType

import torch

from ._jit import _build

SOURCES = ["cuda_loss_binding.cpp", "cuda_loss.cu"]
MAX_PLANES = 65535  # grid z: frames * channels per launch


@functools.cache
def extension() -> ModuleType:
    return _build("dnerv_fast_cuda_loss", SOURCES, extra_cflags=["-O3"], extra_cuda_cflags=["-O3"],
                  what="cuda loss")


def load() -> None:
    if torch.version.cuda is None:
        raise RuntimeError("this torch build has no CUDA support")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA GPU is visible")
    extension()


def limits(out: torch.Tensor) -> list[str]:
    planes = out.shape[0] * out.shape[1]
    return [f"{planes} planes above {MAX_PLANES}"] if planes > MAX_PLANES else []


def forward(out, ref, visible, taps, power: int, need_grad: bool):
    return tuple(extension().ssim_loss_forward(out, ref, visible, taps, power, need_grad))


def backward(grad_sums, out, ref, visible, saved, taps, power: int):
    return extension().ssim_loss_backward(grad_sums, out, ref, visible, saved, taps, power)
