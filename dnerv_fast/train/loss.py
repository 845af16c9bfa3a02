"""Training losses of the paper (SPEC section 3), over unmasked frames only."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dnerv_fast.codec.errors import CodecError
from dnerv_fast.metrics import ssim

LOSSES = ("uvg", "ucf101")


def masked_frames(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] and a bool mask [B, T] -> the kept frames [M, 3, H, W]."""
    return video.permute(0, 2, 1, 3, 4)[mask]


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        kind: str = "uvg") -> torch.Tensor:
    """'uvg': 0.7 * L1 + 0.3 * (1 - SSIM); 'ucf101': MSE + 0.03 * (1 - SSIM)."""
    out, ref = masked_frames(output, mask), masked_frames(target, mask)
    structural = 1 - ssim(out, ref).mean()
    if kind == "uvg":
        return 0.7 * F.l1_loss(out, ref) + 0.3 * structural
    if kind == "ucf101":
        return F.mse_loss(out, ref) + 0.03 * structural
    raise CodecError(f"unknown loss '{kind}'; choose one of: {', '.join(LOSSES)}")
