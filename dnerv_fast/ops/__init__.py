"""The fused hot operations of D-NeRV, each run by a kernel chosen at run time.

Every op has a plain PyTorch definition in :mod:`dnerv_fast.ops.reference`; the fast
backends' kernels (``triton``, ``cuda``, ``cpu``) must match it. Each op is one
``torch.library`` custom op (``dnerv_fast::flow_warp`` ...), for eager and compiled code alike
(:mod:`dnerv_fast.ops.dispatch`); which kernel runs a call is the registry's choice
(:mod:`dnerv_fast.ops.registry`: ``use_backend``, ``set_backend``, ``DNERV_FAST_BACKEND``,
``auto``, and every kernel's capabilities). docs/kernels.md walks through it.
"""
from __future__ import annotations

from . import reference
from .dispatch import block_conv3x3, conv_head, flow_warp, saf_modulate, upsample_tail
from .registry import (AUTO_ORDER, BACKENDS, ENV_VAR, OPS, BackendUnavailable, available_backends,
                       load_backend, requested_backend, resolve, set_backend, use_backend)

__all__ = [
    "flow_warp", "saf_modulate", "upsample_tail", "block_conv3x3", "conv_head", "reference",
    "available_backends", "use_backend", "set_backend", "requested_backend", "resolve",
    "load_backend", "BackendUnavailable", "BACKENDS", "AUTO_ORDER", "ENV_VAR", "OPS",
]
