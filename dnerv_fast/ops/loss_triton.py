"""Triton backend of the fused training loss (:mod:`dnerv_fast.kernels.ssim_loss`).

Runs on CUDA tensors, and on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``,
set before import). float32 and the half types (computed in float32); float64 runs on the
reference (capabilities in :data:`dnerv_fast.ops.ssim_loss.LOSS_BACKENDS`). A compile failure
at a launch (:data:`LAUNCH_ERRORS`) moves the process to the next backend.
"""
from __future__ import annotations

import os

import torch
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources, PTXASError

from dnerv_fast.kernels import ssim_loss as _kernels

LAUNCH_ERRORS = (CompilationError, OutOfResources, PTXASError)


def load() -> None:
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("Triton needs a CUDA device (or TRITON_INTERPRET=1 for CPU tensors)")


forward = _kernels.forward
backward = _kernels.backward
