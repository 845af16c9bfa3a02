"""Fused flow / RGB heads on CPU for decoding (dnerv_fast/csrc/heads.h): 1x1 conv, GELU, 3x3 conv in one pass.

The eager head writes its C//4-channel hidden map at full resolution and reads it back for
the 3x3 conv; the fused kernel keeps three hidden rows per thread instead, and reads the RGB
head's two input parts (x and the warped RGB keyframes) without concatenating them.

:func:`head` is what the model calls: the kernel runs where no autograd graph is built, on
float32 CPU tensors, outside ``torch.compile``, with the ``cpu`` backend in force and
``DNERV_FAST_FUSED_HEADS`` not ``off``; elsewhere (and if the extension cannot load: one
warning) the model's eager head, which computes :func:`reference_head`.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .cpu_winograd import extension

ENV_VAR = "DNERV_FAST_FUSED_HEADS"  # "off" keeps the eager heads


def reference_head(parts: tuple[torch.Tensor, ...], w1: torch.Tensor, b1: torch.Tensor | None,
                   w2: torch.Tensor, b2: torch.Tensor | None) -> torch.Tensor:
    """Conv 1x1 (w1 [hidden, C(, 1, 1, 1)]), exact GELU, conv 3x3 pad 1 (w2 [O, hidden(, 1), 3, 3])
    of ``torch.cat(parts, 1)``, parts [B, C_i, T, H, W]; returns [B, O, T, H, W]."""
    x = torch.cat(parts, dim=1)
    hidden = F.conv3d(x, w1.reshape(w1.shape[0], -1, 1, 1, 1), b1)
    return F.conv3d(F.gelu(hidden), w2.reshape(*w2.shape[:2], 1, 3, 3), b2, padding=(0, 1, 1))


def fused_head(parts: tuple[torch.Tensor, ...], w1: torch.Tensor, b1: torch.Tensor | None,
               w2: torch.Tensor, b2: torch.Tensor | None) -> torch.Tensor:
    """The fused kernel (float32, one or two parts, O = 3 or 4 outputs; no autograd)."""
    ext = extension()
    if ext is None:
        raise RuntimeError("the fused head kernel is unavailable")
    if len(parts) not in (1, 2):
        raise ValueError(f"fused_head takes one or two input parts, got {len(parts)}")
    x0 = parts[0].detach().contiguous()
    x1 = parts[1].detach().contiguous() if len(parts) == 2 else None
    opt = lambda b: b.detach().contiguous() if b is not None else None  # noqa: E731
    return ext.fused_head(x0, x1, w1.detach(), opt(b1), w2.detach(), opt(b2))


def _eligible(parts: tuple[torch.Tensor, ...], weights: tuple[torch.Tensor, ...]) -> bool:
    tensors = (*parts, *weights)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors) or len(parts) > 2:
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if torch.compiler.is_compiling() or os.environ.get(ENV_VAR, "").lower() == "off":
        return False
    from . import resolve

    return resolve("cpu")[0] == "cpu" and extension() is not None


def head(parts: tuple[torch.Tensor, ...], w1: torch.Tensor, b1: torch.Tensor | None,
         w2: torch.Tensor, b2: torch.Tensor | None) -> torch.Tensor | None:
    """The fused kernel's result where it applies (see the module docstring), else None:
    the caller then runs its own eager path."""
    weights = tuple(w for w in (w1, b1, w2, b2) if w is not None)
    if w2.shape[0] not in (3, 4) or not _eligible(parts, weights):
        return None
    return fused_head(parts, w1, b1, w2, b2)
