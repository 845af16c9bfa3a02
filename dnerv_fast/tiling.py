"""Cut frames of any size into the model's fixed-size patches and put them back.

Each patch position becomes its own video (as in the paper's reference code: UVG's 1024x1920 frames become
4x6 patch sequences of 256x320, row-major). Frames that do not fill the grid are padded by
repeating their edge pixels (``fit="pad"``, cropped away again by :func:`stitch`), or the
remainder is dropped (``fit="crop"``: the paper's upper-left crop of 1080p UVG to 1024 rows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PatchGrid:
    """How frames of ``height`` x ``width`` map onto ``rows`` x ``cols`` patches."""

    height: int
    width: int
    patch_h: int
    patch_w: int
    rows: int
    cols: int

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def covered(self) -> tuple[int, int]:
        """(height, width) of the region the patches cover (padded or cropped frame)."""
        return self.rows * self.patch_h, self.cols * self.patch_w

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) that :func:`stitch` returns: the original, or the crop."""
        return min(self.height, self.covered[0]), min(self.width, self.covered[1])


def patch_grid(height: int, width: int, patch_size: tuple[int, int], fit: str = "pad") -> PatchGrid:
    """The grid for frames of ``height`` x ``width``; ``fit`` is ``"pad"`` or ``"crop"``."""
    ph, pw = patch_size
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if fit == "pad":
        rows, cols = math.ceil(height / ph), math.ceil(width / pw)
    elif fit == "crop":
        rows, cols = height // ph, width // pw
        if rows == 0 or cols == 0:
            raise ValueError(f"frames of {height}x{width} are smaller than one {ph}x{pw} patch; use fit='pad'")
    else:
        raise ValueError(f"fit must be 'pad' or 'crop', got {fit!r}")
    return PatchGrid(height, width, ph, pw, rows, cols)


def tile(frames: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """[N, C, H, W] frames -> [rows*cols, N, C, patch_h, patch_w], row-major patches."""
    if frames.dim() != 4:
        raise ValueError(f"frames must be [N, C, H, W], got shape {tuple(frames.shape)}")
    N, C, H, W = frames.shape
    if (H, W) != (grid.height, grid.width):
        raise ValueError(f"frames are {H}x{W} but the grid was made for {grid.height}x{grid.width}")
    ch, cw = grid.covered
    frames = frames[:, :, :ch, :cw]
    pad_h, pad_w = ch - frames.shape[2], cw - frames.shape[3]
    if pad_h or pad_w:
        # replicate-padding needs a float tensor; integer frames round-trip exactly through float32
        padded = F.pad(frames.float(), (0, pad_w, 0, pad_h), mode="replicate")
        frames = padded.to(frames.dtype)
    patches = frames.reshape(N, C, grid.rows, grid.patch_h, grid.cols, grid.patch_w)
    return patches.permute(2, 4, 0, 1, 3, 5).reshape(grid.count, N, C, grid.patch_h, grid.patch_w)


def stitch(patches: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
    """Inverse of :func:`tile`: [rows*cols, N, C, ph, pw] -> [N, C, H, W], cropped back."""
    if patches.dim() != 5 or patches.shape[0] != grid.count or patches.shape[3:] != (grid.patch_h, grid.patch_w):
        raise ValueError(f"patches must be [{grid.count}, N, C, {grid.patch_h}, {grid.patch_w}], "
                         f"got {tuple(patches.shape)}")
    _, N, C, ph, pw = patches.shape
    frames = patches.reshape(grid.rows, grid.cols, N, C, ph, pw).permute(2, 3, 0, 4, 1, 5)
    frames = frames.reshape(N, C, grid.rows * ph, grid.cols * pw)
    oh, ow = grid.output_size
    return frames[:, :, :oh, :ow]
