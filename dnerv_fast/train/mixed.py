"""Mixed-precision training: the forward under :func:`torch.autocast`, fp32 master weights.

With ``bf16`` or ``fp16`` the network's forward runs under ``torch.autocast(device type,
dtype)`` (:meth:`Mixed.autocast`): convolutions and GEMMs compute in that type from fp32
weights, which stay the only copy and are what the optimiser updates, with fp32 gradients
and moments. The model casts for its own fused ops, which autocast leaves alone
(:mod:`dnerv_fast.model.autocast`), and the warp computes its sampling coordinates in fp32.
The loss and its sums are fp32: the output is cast before them, outside autocast (SSIM's
local variances are differences of squares, which half precision would cancel).

fp16 gradients can underflow, so fp16 scales the loss (:class:`torch.amp.GradScaler`); bf16
has fp32's exponent range and needs none. The scaler must not read its overflow flag on the
host each step; it does not when the optimiser applies the scaling itself (fused AdamW),
which :func:`make_optimizer` picks for fp16.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn as nn

from dnerv_fast.errors import CodecError
from dnerv_fast.precision import DTYPES

PRECISIONS = tuple(DTYPES)


def check_precision(name: str) -> None:
    if name not in DTYPES:
        raise CodecError(f"unknown training precision '{name}'; choose one of: "
                         f"{', '.join(PRECISIONS)}")


def make_optimizer(params: Iterator[nn.Parameter], lr: float, precision: str,
                   device: torch.device) -> torch.optim.AdamW:
    """The paper's AdamW. Fused on CUDA (one kernel) and for fp16 (scaling without a host
    sync); the CPU's fp32/bf16 path keeps the default kernel, so its numbers stay those of
    earlier versions."""
    fused = device.type == "cuda" or precision == "fp16"
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=0.0,
                             fused=True if fused else None)


class Mixed:
    """The precision of training on ``device``: the forward's autocast, and the step that
    updates the fp32 weights (through a gradient scaler for fp16)."""

    def __init__(self, precision: str, device: torch.device) -> None:
        check_precision(precision)
        self.dtype = DTYPES[precision]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Where the forward runs: autocast to the training type (nothing for fp32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and one optimiser step (skipped by the scaler when fp16 overflowed)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state as plain numbers (empty without a scaler)."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler.is_enabled() and state:
            self.scaler.load_state_dict(state)
