"""Quantisation-aware training: a final phase that trains through the weight quantiser.

Every parameter is given a :mod:`torch.nn.utils.parametrize` parametrisation that replaces it,
in the forward pass, by exactly what the decoder will use (the per-group affine quantiser of
:mod:`.quantize` at the file's bit depth), while the gradient passes to the float weights
unchanged (straight-through estimator). The QAT epochs are the last epochs of the one
training run (:class:`~dnerv_fast.train.trainer.LatePhase`): the same optimiser state and the
tail of the same cosine schedule, so the float training before them is not cut short. At the
end the parametrisations are removed, leaving float weights (and the state_dict's names) as
before, whose quantisation is the network QAT trained.

With magnitude pruning the phase is also the fine-tuning after the cut: the weights below
the global threshold of :func:`.quantize.prune_threshold`, taken when the phase starts, are
held at zero in the forward pass (their gradient is dropped) and zeroed in the float
weights at the end, so the file prunes exactly the weights the network learnt without.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from dnerv_fast.codec.quantize import check_bits, num_groups, prune_threshold
from dnerv_fast.errors import UsageError
from dnerv_fast.train.trainer import LatePhase


def fake_quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``w`` quantised and dequantised as :func:`.quantize.quantize_tensor` does (per group,
    2^bits levels, zero exact), with the identity as its gradient."""
    levels = 2 ** bits - 1
    x = w.reshape(num_groups(tuple(w.shape)), -1)
    with torch.no_grad():   # in float64 with a float32 scale, as the file's quantiser
        x64 = x.double()
        lo = x64.min(dim=1, keepdim=True).values.clamp(max=0)
        hi = x64.max(dim=1, keepdim=True).values.clamp(min=0)
        step = (hi - lo) / levels
        z = torch.round(-lo / torch.where(step > 0, step, torch.ones_like(step))).clamp(0, levels)
        up = torch.where(z < levels, hi / (levels - z).clamp(min=1), torch.zeros_like(hi))
        down = torch.where(z > 0, -lo / z.clamp(min=1), torch.zeros_like(lo))
        scale = torch.maximum(up, down).float().double()
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = (torch.round(x64 / safe) + z).clamp(0, levels) - z
        q = torch.where(scale > 0, q.float() * scale.float(), torch.zeros_like(x))
    return (x + (q - x).detach()).reshape(w.shape)


class FakeQuant(nn.Module):
    """A parametrisation: the weight as the decoder will see it at ``bits`` bits, with the
    pruned weights (``keep`` False) at zero."""

    def __init__(self, bits: int, keep: torch.Tensor | None = None) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.keep = keep

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.keep is not None:
            w = w * self.keep
        return fake_quantize(w, self.bits)


def qat_epochs(epochs: int, share: float) -> int:
    """Epochs of the QAT phase: ``share`` of ``epochs`` (rounded, at least one when the share
    is positive), leaving at least one epoch of float training."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise UsageError(f"the QAT share of the epochs must be in [0, 1), got {share!r}")
    if share == 0 or epochs < 2:
        return 0
    return min(epochs - 1, max(1, round(share * epochs)))


def attach(model: nn.Module, bits: int, prune: float = 0.0) -> list[tuple[nn.Module, str]]:
    """Parametrise every parameter of ``model`` with :class:`FakeQuant`, pruning the
    ``prune`` fraction of smallest weights (biases kept); returns what to :func:`detach`."""
    threshold = prune_threshold(dict(model.named_parameters()), prune)
    targets = [(m, name) for m in model.modules() for name, _ in list(m.named_parameters(recurse=False))]
    for module, name in targets:
        w = getattr(module, name)
        keep = (w.detach().abs() > threshold).to(w.dtype) if threshold > 0 and w.dim() >= 2 else None
        parametrize.register_parametrization(module, name, FakeQuant(bits, keep))
    return targets


def qat_phase(epochs: int, share: float, bits: int, prune: float = 0.0) -> LatePhase | None:
    """The last :func:`qat_epochs` of ``epochs`` trained through the ``bits``-bit quantiser
    (pruned by ``prune`` when it starts); None when the share gives no QAT epoch."""
    late = qat_epochs(epochs, share)
    if not late:
        return None
    cut = f", {prune:.0%} pruned" if prune else ""

    def enter(model: nn.Module) -> Callable[[], None]:
        targets = attach(model, bits, prune)
        return lambda: detach(targets)

    return LatePhase(epochs - late, enter, f"through the {bits}-bit quantiser{cut}")


def detach(targets: list[tuple[nn.Module, str]]) -> None:
    """Remove the parametrisations, keeping the float weights they were computed from (the
    pruned ones at zero)."""
    for module, name in targets:
        keep = module.parametrizations[name][0].keep
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        if keep is not None:
            with torch.no_grad():
                getattr(module, name).mul_(keep)
