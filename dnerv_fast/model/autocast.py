"""The model's own operations under :func:`torch.autocast`.

Autocast casts the arguments of the ATen ops on its lists (convolutions, GEMMs) and leaves
everything else alone: the fused ops of :mod:`dnerv_fast.ops` (autograd Functions eagerly,
``torch.library`` custom ops under ``torch.compile``) and in-place GEMMs would see an
autocast activation next to an fp32 parameter, which the backends refuse (mixed dtypes) and
``baddbmm_`` cannot run. So the model casts for them: :func:`fused` casts every floating
tensor argument of a call to the autocast type and runs the call with autocast off, so that
what the op computes does not depend on autocast's lists (the rule
``torch.library.register_autocast`` would give a custom op, here for both the eager and the
compiled path).

The warp takes its flow and blend weights in that type too, the type every backend is
built for (one dtype per call), but computes the sampling coordinates (pixel position plus
flow) in float32 whatever its inputs' type: the reference promotes them
(:func:`dnerv_fast.ops.reference.warp_one`) and the CPU, CUDA and Triton kernels accumulate
them in float32. Positions are so exact on any frame width (bf16 holds integers only up to 256).

Outside autocast nothing is cast or wrapped: the fp32 path is the same code as before.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch

R = TypeVar("R")


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The type autocast computes in on ``device_type``, None where it is off (or where
    autocast does not exist, such as the meta device that shape-only runs use)."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def cast_floats(dtype: torch.dtype, *args: Any) -> tuple[Any, ...]:
    """``args`` with every floating tensor in ``dtype``, in tuples and lists too (other values
    as they are)."""
    return tuple(cast_floats(dtype, *a) if isinstance(a, (tuple, list)) else
                 a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def fused(op: Callable[..., R], *args: Any) -> R:
    """``op(*args)``; under autocast, with the floating tensors of ``args`` in the autocast
    type and autocast off inside ``op``."""
    device_type = next(a.device.type for a in args if isinstance(a, torch.Tensor))
    dtype = autocast_dtype(device_type)
    if dtype is None:
        return op(*args)
    with torch.autocast(device_type, enabled=False):
        return op(*cast_floats(dtype, *args))
