"""Mixed-precision training: a bf16 or fp16 working copy of the network, fp32 master weights.

The optimiser holds the fp32 model (the master weights) and its fp32 moments. With
``bf16`` or ``fp16`` the forward and backward passes run on a copy of the network cast to
that type (the decoder's ``--dtype`` path), its gradients are copied into the master's as
fp32 before each optimiser step, and the master's new weights are cast back into the copy
after it. The loss and its sums are fp32 (the output is cast before the loss), and the warp's
sampling coordinates are fp32 whatever the feature type (the ops compute them so).

Why a working copy rather than :func:`torch.autocast`: autocast leaves in-place ops alone,
and the model's 1x1 convolutions accumulate parts in place (``baddbmm_``), which under
autocast mixes an fp16/bf16 accumulator with fp32 weights and fails.

fp16 gradients can underflow, so fp16 scales the loss (:class:`torch.amp.GradScaler`); bf16
has fp32's exponent range and needs none. The scaler must not read its overflow flag on the
host each step; it does not when the optimiser applies the scaling itself (fused AdamW),
which :func:`make_optimizer` picks for fp16.
"""
from __future__ import annotations

import copy
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
    """The network that computes (``work``) and the steps that update the master ``model``."""

    def __init__(self, precision: str, model: nn.Module) -> None:
        check_precision(precision)
        self.dtype = DTYPES[precision]
        self.model = model
        self.work = model if self.dtype == torch.float32 else copy.deepcopy(model).to(self.dtype)
        device = next(model.parameters()).device
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self._master = list(model.parameters())
        self._copies = list(self.work.parameters())

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        self.work.train(mode)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and one optimiser step (skipped by the scaler when fp16 overflowed)."""
        optimizer.zero_grad(set_to_none=True)
        if self.work is not self.model:
            self.work.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler.is_enabled() else loss).backward()
        if self.work is not self.model:
            for master, work in zip(self._master, self._copies):
                master.grad = None if work.grad is None else work.grad.float()
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        if self.work is not self.model:
            with torch.no_grad():
                torch._foreach_copy_(self._copies, self._master)

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state as plain numbers (empty without a scaler)."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler.is_enabled() and state:
            self.scaler.load_state_dict(state)
