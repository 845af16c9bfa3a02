"""The NeRV baseline (frame-index only, no keyframes), for comparisons at equal size."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..configs import ModelConfig, get_config
from .layers import Stem


class NeRVBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out * stride * stride, 3, padding=1)
        self.up_scale = nn.PixelShuffle(stride)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.up_scale(self.conv(x)))


class NeRV(nn.Module):
    """``forward(embed_input [B, E, T]) -> [B, 3, T, H, W]`` in [0, 1].

    Its time input is the frame's index over all videos together, normalised to [0, 1].
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        gh, gw = config.stem_grid
        self.stem = Stem(config.embed_length, config.fc_dim * gh * gw)
        width = config.fc_dim
        layers = []
        for i, stride in enumerate(config.strides):
            new = int(width * config.expansion) if i == 0 else max(round(width / stride), config.lower_width)
            layers.append(NeRVBlock(width, new, stride))
            width = new
        self.layers = nn.ModuleList(layers)
        self.head_layer = nn.Conv2d(width, 3, 3, padding=1)

    @classmethod
    def from_config(cls, name: str | ModelConfig, **overrides) -> "NeRV":
        return cls(name if isinstance(name, ModelConfig) else get_config(name, **overrides))

    def forward(self, embed_input: torch.Tensor) -> torch.Tensor:
        E = self.config.embed_length
        if embed_input.dim() != 3 or embed_input.shape[1] != E:
            raise ValueError(f"embed_input must be [B, {E}, T], got shape {tuple(embed_input.shape)}")
        B, _, T = embed_input.shape
        gh, gw = self.config.stem_grid
        x = self.stem(embed_input).view(B, -1, gh, gw, T).permute(0, 4, 1, 2, 3).reshape(B * T, -1, gh, gw)
        for layer in self.layers:
            x = layer(x)
        x = (torch.tanh(self.head_layer(x)) + 1) * 0.5
        return x.view(B, T, 3, *x.shape[-2:]).permute(0, 2, 1, 3, 4)
