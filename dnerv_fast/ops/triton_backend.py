"""Triton backend: the kernels in :mod:`dnerv_fast.kernels`.

Runs on CUDA tensors, and on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``,
which must be set before this module is imported). float64 and mixed-dtype calls are not
supported (its capabilities in :data:`dnerv_fast.ops.registry.BACKENDS`), so the reference
handles them. A compile failure at a launch (:data:`LAUNCH_ERRORS`) moves the process to the
next backend.
"""
from __future__ import annotations

import os

import torch
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources, PTXASError

from dnerv_fast.kernels import flow_warp as _warp
from dnerv_fast.kernels import saf as _saf
from dnerv_fast.kernels import upsample_tail as _tail

from . import reference
from .dispatch import pinned

# A kernel that fails to compile (or needs more shared memory / registers than the device
# has) fails at its first launch, not at load(): the registry then moves to the next backend.
LAUNCH_ERRORS = (CompilationError, OutOfResources, PTXASError)


def load() -> None:
    """Raise RuntimeError when neither a CUDA device nor the interpreter is available."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("Triton needs a CUDA device (or TRITON_INTERPRET=1 for CPU tensors)")


# The flow_warp backward accumulates with atomic adds, so on a GPU the gradients of start,
# end, flow and t are not bitwise reproducible between runs (forward is deterministic); the
# other backward passes are deterministic.
def flow_warp_forward(start, end, flow, t) -> torch.Tensor:
    return _warp.flow_warp_forward(start, end, flow, t)


def flow_warp_backward(grad_out, start, end, flow, t, needs):
    return _warp.flow_warp_backward(grad_out, start, end, flow, t, needs)


def saf_modulate_forward(x, fused, weight, bias, *, decoding: bool = False) -> torch.Tensor:
    """gamma and beta never reach memory (tensor-core ``tl.dot`` in half types)."""
    return _saf.saf_forward(x, fused, weight, bias)


def saf_modulate_backward(grad_out, x, fused, weight, bias, needs):
    return reference.saf_gradients(_saf.saf_grad_x, grad_out, x, fused, weight, bias, needs)


def upsample_tail_forward(y, conv_bias, scale: int, tfc_weight, tfc_bias) -> torch.Tensor:
    return _tail.tail_forward(y, conv_bias, scale, tfc_weight, tfc_bias)


def upsample_tail_backward(grad_out, y, conv_bias, scale: int, tfc_weight, tfc_bias, needs):
    return _tail.tail_backward(grad_out, y, conv_bias, scale, tfc_weight, tfc_bias, needs)



# The public ops with this backend in force (tests and benchmarks that name a backend).
flow_warp, saf_modulate, upsample_tail = pinned("triton")
