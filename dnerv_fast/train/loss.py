"""Training losses of the paper (its implementation details), over unmasked frames and visible pixels only.

The loss is kept as sums and counts (:class:`LossSums`) rather than as means, because means
do not add up: under data-parallel training each process sums over its own clips, the counts
are summed over all processes, and the loss divides one by the other, so N processes
optimise exactly the loss of one process over the whole batch.

For inpainting, a per-pixel visibility (1 visible, 0 hidden) restricts every term to visible
pixels. The SSIM term only uses windows that hold no hidden pixel at all: the 11x11 Gaussian
window weighs every pixel it covers, so a window touching a hole would let hidden target
pixels into the loss and its gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dnerv_fast.errors import CodecError
from dnerv_fast.ops.ssim_loss import ssim_loss

# name: (weight of the pixel error, weight of 1 - SSIM, power of the pixel error)
TERMS = {"uvg": (0.7, 0.3, 1), "ucf101": (1.0, 0.03, 2)}
LOSSES = tuple(TERMS)


def masked_frames(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] and a bool mask [B, T] -> the kept frames [M, C, H, W].

    ``mask`` may also be the mask's (clip, slot) pairs, long [2, M] (``Batch.kept``): the
    same frames in the same order, selected without a data-dependent shape.
    """
    if mask.dtype != torch.bool:
        return video[mask[0], :, mask[1]]
    return video.permute(0, 2, 1, 3, 4)[mask]


def check_loss(kind: str) -> None:
    if kind not in TERMS:
        raise CodecError(f"unknown loss '{kind}'; choose one of: {', '.join(LOSSES)}")


@dataclass
class LossSums:
    """Numerators and denominators of the two loss terms; sums of several parts add up."""

    kind: str
    error: torch.Tensor           # sum of |out - ref|^p over visible values
    dissimilarity: torch.Tensor   # sum of 1 - SSIM over windows without hidden pixels
    pixels: torch.Tensor          # how many values ``error`` sums over
    windows: torch.Tensor         # how many window values ``dissimilarity`` sums over

    def loss(self, pixels: torch.Tensor | None = None,
             windows: torch.Tensor | None = None) -> torch.Tensor:
        """The loss, optionally dividing by counts taken over a larger batch (all processes).

        A term with nothing to count (every pixel hidden) contributes zero.
        """
        pixels = self.pixels if pixels is None else pixels
        windows = self.windows if windows is None else windows
        pixel_weight, ssim_weight, _ = TERMS[self.kind]
        return (pixel_weight * self.error / pixels.clamp(min=1)
                + ssim_weight * self.dissimilarity / windows.clamp(min=1))


def loss_sums(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "uvg",
              visible: torch.Tensor | None = None) -> LossSums:
    """Sums of the loss terms over the unmasked frames of [B, 3, T, H, W] clips.

    ``mask`` [B, T] marks real frames; ``visible`` [B, 1, T, H, W] (0/1 floats) marks the
    pixels the loss may see, None for all of them.
    """
    check_loss(kind)
    out, ref = masked_frames(output, mask), masked_frames(target, mask)
    seen = None if visible is None else masked_frames(visible, mask)
    return LossSums(kind, *ssim_loss(out, ref, seen, TERMS[kind][2]))


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        kind: str = "uvg", visible: torch.Tensor | None = None) -> torch.Tensor:
    """'uvg': 0.7 * L1 + 0.3 * (1 - SSIM); 'ucf101': MSE + 0.03 * (1 - SSIM).

    Means over the unmasked frames and, with ``visible``, over visible pixels only (see
    :func:`loss_sums`).
    """
    return loss_sums(output, target, mask, kind, visible).loss()
