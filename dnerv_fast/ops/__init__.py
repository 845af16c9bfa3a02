"""The three fused hot operations of D-NeRV, dispatched to a run-time chosen backend.

Every op has a plain PyTorch definition in :mod:`dnerv_fast.ops.reference`; fast backends
(``triton``, ``cuda``, ``cpu``) must match it. See :mod:`dnerv_fast.ops.registry` for the
choice rules (``use_backend``, ``set_backend``, ``DNERV_FAST_BACKEND``, ``auto``) and
:mod:`dnerv_fast.ops._library` for how calls reach a backend: the ops are ``torch.library``
custom ops (``dnerv_fast::flow_warp`` ...) under ``torch.compile``, which traces a model that
uses them without graph breaks and keeps the backend in force when it was compiled.
"""
from __future__ import annotations

import torch

from . import reference
from .registry import (AUTO_ORDER, BACKENDS, ENV_VAR, BackendUnavailable, available_backends,
                       load_backend, requested_backend, resolve, set_backend, use_backend)
from .validation import check_flow_warp, check_saf_modulate, check_upsample_tail
from ._library import call as _call

__all__ = [
    "flow_warp", "saf_modulate", "upsample_tail", "reference", "available_backends",
    "use_backend", "set_backend", "requested_backend", "resolve", "load_backend",
    "BackendUnavailable", "BACKENDS", "AUTO_ORDER", "ENV_VAR",
]


def flow_warp(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    """``(1-t) * warp(start, flow[:, :2]) + t * warp(end, flow[:, 2:])`` -> [B, C, T, H, W].

    start, end: [B, C, H, W]; flow: [B, 4, T, H, W] in pixels; t: [B, T].
    Bilinear, border padding, align_corners=True (grid_sample semantics).
    """
    check_flow_warp(start, end, flow, t)
    return _call("flow_warp", start.device.type, start, end, flow, t)


def saf_modulate(x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x * (1 + gamma) + beta`` where [gamma; beta] = 1x1 conv of ``fused``.

    x: [B, C, T, H, W]; fused: [B, K, T, H, W]; weight: [2C, K] (a [2C, K, 1, 1, 1] conv
    weight is accepted); bias: [2C] or None. The result may be in channels_last_3d memory
    format (the ``cpu`` backend writes large maps so when no autograd graph is built, for the
    conv that follows); its values do not depend on the layout.
    """
    if isinstance(weight, torch.Tensor) and weight.dim() > 2:
        weight = weight.reshape(weight.shape[0], -1)
    check_saf_modulate(x, fused, weight, bias)
    return _call("saf_modulate", x.device.type, x, fused, weight, bias)


def upsample_tail(y: torch.Tensor, conv_bias: torch.Tensor | None, scale: int,
                  tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None = None) -> torch.Tensor:
    """+bias, PixelShuffle(scale), exact GELU, then GTMLP with residual -> [B, C, T, H*s, W*s].

    y: [B, C*s*s, T, H, W] (output of the bias-free 3x3 conv; the ``cpu`` backend reads a
    channels_last_3d y in place, the others copy it); tfc_weight: [C*T, T] (a
    [C*T, T, 1, 1] Conv2d weight is accepted); tfc_bias: [C*T] or None.
    """
    if isinstance(tfc_weight, torch.Tensor) and tfc_weight.dim() > 2:
        tfc_weight = tfc_weight.reshape(tfc_weight.shape[0], -1)
    check_upsample_tail(y, conv_bias, scale, tfc_weight, tfc_bias)
    return _call("upsample_tail", y.device.type, y, conv_bias, scale, tfc_weight, tfc_bias)
