"""Affine weight quantisation to b bits, per output channel, plus pruning.

A group of weights (one output channel, or a whole small tensor) is stored as integers
q in 0..2^b - 1 (2^b values, 2^b - 1 steps across the range) with a float32 ``scale`` and
an integer ``zero_point`` z; dequantisation is ``(q - z) * scale`` in float32. The group's range
[min, max] is widened to include 0 and z = -min / scale is an integer, so 0 is exactly
representable: pruned weights (and exact zeros) stay exactly zero. (The reference uses 2^b
steps, i.e. 257 levels for 8 bits, which does not fit in 8 bits; here b bits hold every
level.)

Groups are output channels (dim 0) when each channel holds at least ``MIN_GROUP`` values;
smaller tensors (biases, the temporal MLP's 8-tap rows) form one group, because a 5-byte
scale and zero point per handful of weights would cost more than it saves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dnerv_fast.errors import QuantizationError

MIN_BITS, MAX_BITS = 4, 8
MIN_GROUP = 32


@dataclass
class QuantizedTensor:
    """One quantised tensor: ``symbols`` are q - z (int16, flat, row-major)."""

    shape: tuple[int, ...]
    bits: int
    offsets: np.ndarray      # int16 [numel]: q - zero_point, in -(2^b-1) .. 2^b-1
    scale: np.ndarray        # float32 [groups]
    zero_point: np.ndarray   # uint8 [groups]

    @property
    def groups(self) -> int:
        return int(self.scale.shape[0])


def check_bits(bits: int) -> int:
    if not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise QuantizationError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits}")
    return int(bits)


def num_groups(shape: tuple[int, ...]) -> int:
    """Quantisation groups of a tensor of this shape (see module docstring)."""
    numel = int(np.prod(shape)) if shape else 1
    if len(shape) >= 2 and shape[0] > 0 and numel // shape[0] >= MIN_GROUP:
        return int(shape[0])
    return 1


def quantize_tensor(w: torch.Tensor, bits: int) -> QuantizedTensor:
    """Quantise ``w`` to q in 0..2^bits - 1 per group (range / (2^bits - 1) per step)."""
    bits = check_bits(bits)
    levels = 2 ** bits - 1
    shape = tuple(w.shape)
    x = w.detach().to("cpu", torch.float64).reshape(num_groups(shape), -1)
    lo = x.min(dim=1).values.clamp(max=0)
    hi = x.max(dim=1).values.clamp(min=0)
    step = (hi - lo) / levels
    safe = torch.where(step > 0, step, torch.ones_like(step))
    z = torch.round(-lo / safe).clamp(0, levels)
    # Re-fit the scale so that [-z, levels - z] * scale still covers [lo, hi] after rounding z.
    up = torch.where(z < levels, hi / (levels - z).clamp(min=1), torch.zeros_like(hi))
    down = torch.where(z > 0, -lo / z.clamp(min=1), torch.zeros_like(lo))
    scale = torch.maximum(up, down).to(torch.float32)
    s64 = scale.double().unsqueeze(1)
    q = torch.where(s64 > 0, torch.round(x / torch.where(s64 > 0, s64, 1.0)), torch.zeros_like(x))
    q = (q + z.unsqueeze(1)).clamp(0, levels)
    offsets = (q - z.unsqueeze(1)).to(torch.int16).reshape(-1).numpy()
    return QuantizedTensor(shape, bits, offsets, scale.numpy(), z.to(torch.uint8).numpy())


def dequantize_tensor(qt: QuantizedTensor) -> torch.Tensor:
    """Float32 weights exactly as the decoder uses them: (q - z) * scale."""
    offsets = torch.from_numpy(qt.offsets.astype(np.float32)).reshape(qt.groups, -1)
    scale = torch.from_numpy(qt.scale.astype(np.float32)).unsqueeze(1)
    return (offsets * scale).reshape(qt.shape)


def check_prune(fraction: float) -> float:
    if not 0.0 <= fraction < 1.0:
        raise QuantizationError(f"prune fraction must be in [0, 1), got {fraction}")
    return float(fraction)


def prune_threshold(state_dict: dict[str, torch.Tensor], fraction: float) -> float:
    """|w| below which the smallest ``fraction`` of prunable weights fall (0 prunes nothing).

    Prunable weights are those of tensors with two or more dimensions (not biases).
    """
    check_prune(fraction)
    mags = [t.detach().abs().flatten().cpu().float() for t in state_dict.values() if t.dim() >= 2]
    if fraction == 0.0 or not mags:
        return 0.0
    allm = torch.cat(mags)
    k = math.ceil(fraction * allm.numel())
    return float(torch.kthvalue(allm, k).values) if k > 0 else 0.0


def prune_state_dict(state_dict: dict[str, torch.Tensor], fraction: float
                     ) -> dict[str, torch.Tensor]:
    """Zero the smallest-magnitude ``fraction`` of weights (global threshold, biases kept)."""
    threshold = prune_threshold(state_dict, fraction)
    if threshold == 0.0:
        return dict(state_dict)
    return {k: torch.where(t.abs() <= threshold, torch.zeros_like(t), t) if t.dim() >= 2 else t
            for k, t in state_dict.items()}
