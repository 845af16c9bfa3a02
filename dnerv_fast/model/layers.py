"""Building blocks whose attribute names follow the reference, so its state_dict keys match."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops


def frame_conv(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> nn.Conv3d:
    """A per-frame 2-D convolution expressed as Conv3d with temporal kernel 1."""
    return nn.Conv3d(c_in, c_out, (1, kernel, kernel), (1, stride, stride), (0, padding, padding))


class Stem(nn.Module):
    """Positional encoding [B, E, T] -> [B, out, T] through a two-layer 1x1 MLP."""

    def __init__(self, in_chan: int, out_chan: int, hidden: int = 512) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(in_chan, hidden, 1), nn.GELU(),
                                 nn.Conv1d(hidden, out_chan, 1), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class ContentEncoder(nn.Module):
    """Keyframes [B, 3, K, H, W] -> feature pyramid, coarsest first, raw input last."""

    def __init__(self, strides: tuple[int, ...], dim: int = 64) -> None:
        super().__init__()
        self.head = nn.Sequential(frame_conv(3, dim, 3, padding=1), nn.GELU())
        self.body = nn.ModuleList(nn.Sequential(frame_conv(dim, dim, s, stride=s), nn.GELU()) for s in strides)

    def forward(self, keyframes: torch.Tensor) -> list[torch.Tensor]:
        levels = [keyframes]
        x = self.head(keyframes)
        for stage in self.body:
            x = stage(x)
            levels.append(x)
        return levels[::-1]


class Head(nn.Module):
    """1x1 conv to C//4, GELU, 3x3 conv to ``out_chan``: the flow heads and the RGB head."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(frame_conv(in_chan, in_chan // 4), nn.GELU(),
                                  frame_conv(in_chan // 4, out_chan, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ToStyle(nn.Module):
    """Holds the SAF 1x1 conv (64 -> 2C); the modulation itself is the fused op."""

    def __init__(self, content_dim: int, chan: int) -> None:
        super().__init__()
        self.conv = frame_conv(content_dim, 2 * chan)


class DNeRVBlock(nn.Module):
    """SAF modulation, 3x3 conv, PixelShuffle, GELU, global temporal MLP (with residual)."""

    def __init__(self, c_in: int, c_out: int, stride: int, clip_len: int, content_dim: int = 64) -> None:
        super().__init__()
        self.stride = stride
        self.to_style = ToStyle(content_dim, c_in)
        self.conv = frame_conv(c_in, c_out * stride * stride, 3, padding=1)
        self.tfc = nn.Conv2d(c_out * clip_len, c_out * clip_len, 1, groups=c_out)
        for conv in (self.to_style.conv, self.conv):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        x = ops.saf_modulate(x, content, self.to_style.conv.weight, self.to_style.conv.bias)
        y = F.conv3d(x, self.conv.weight, None, padding=(0, 1, 1))
        return ops.upsample_tail(y, self.conv.bias, self.stride, self.tfc.weight, self.tfc.bias)
