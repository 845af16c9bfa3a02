"""Plain PyTorch definition of the training loss's sums: the ground truth of the fused
``ssim_loss`` op (:mod:`dnerv_fast.ops.ssim_loss`).

Over frames [N, C, H, W] (the unmasked frames, already selected): the sum of |out - ref|^p
over visible values, the sum of 1 - SSIM over window positions that hold no hidden pixel,
and how many values each sum covers. For float32 and float64 these are exactly the
operations the training loss has always run; float16 / bfloat16 frames are computed in
float32, and give float32 sums (a half-type sum of a batch's errors would overflow).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dnerv_fast.metrics import ssim_map, ssim_window

_HALF = (torch.float16, torch.bfloat16)


def window_visibility(visible: torch.Tensor, window: int) -> torch.Tensor:
    """[N, 1, H, W] 0/1 -> [N, 1, H - window + 1, W - window + 1]: 1 where a window sees no hole."""
    return 1 - F.max_pool2d(1 - visible, window, stride=1)


def ssim_loss(out: torch.Tensor, ref: torch.Tensor, visible: torch.Tensor | None = None,
              power: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of |out - ref|^power, sum of 1 - SSIM, values counted, windows counted).

    ``visible`` [N, 1, H, W] (0/1) restricts both terms: the pixel error to visible pixels,
    SSIM to windows without a hidden pixel; the counts then follow the visible area.
    """
    if out.dtype in _HALF:
        out, ref = out.float(), ref.float()
    error = (out - ref).abs().pow(power)
    local = 1 - ssim_map(out, ref)
    if visible is None:
        # Filled on the device: a tensor made from a host number would be a copy per step.
        count = error.new_full((), float(error.numel()), dtype=torch.float32)
        windows = local.new_full((), float(local.numel()), dtype=torch.float32)
        return error.sum(), local.sum(), count, windows
    seen = visible.to(out.dtype)
    whole = window_visibility(seen, ssim_window(*out.shape[-2:]))
    channels = out.shape[1]
    return ((error * seen).sum(), (local * whole).sum(), seen.sum() * channels,
            whole.sum() * channels)
