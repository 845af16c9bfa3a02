"""Frame-index positional encoding, bit-exact with the reference's float32 computation.

The high frequencies (1.25**239 * pi ~ 1e23) act as fixed pseudo-random codes, so published
checkpoints only work if every float32 rounding step is reproduced: ``t * base**i`` (rounded
to float32), then ``* pi`` (rounded again), then sin/cos, on the CPU.
"""
from __future__ import annotations

import math

import torch


def positional_encoding(t_idx: torch.Tensor, levels: int = 240, base: float = 1.25) -> torch.Tensor:
    """Encode normalised frame times [B, T] as [B, 2*levels, T] (sin_0, cos_0, sin_1, ...).

    Always computed in float32 on the CPU and returned there; move it to the model's device.
    """
    if not isinstance(t_idx, torch.Tensor) or t_idx.dim() != 2:
        raise ValueError(f"t_idx must be a [B, T] tensor, got {getattr(t_idx, 'shape', type(t_idx))}")
    pos = t_idx.detach().to(device="cpu", dtype=torch.float32)
    rows = []
    for i in range(levels):
        angle = pos * base ** i * math.pi
        rows += [torch.sin(angle), torch.cos(angle)]
    return torch.stack(rows, dim=1)
