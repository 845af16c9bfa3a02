"""Building blocks whose attribute names follow the reference, so its state_dict keys match."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import ops
from .autocast import fused


# A 3x3 conv with at most this many output channels runs as conv2d over frames: oneDNN
# skips such skinny Conv3d shapes and ATen's slow path is 3-8x slower (benches/, CPU).
SKINNY_CONV_CHANNELS = 16


class FrameConv(nn.Conv3d):
    """A per-frame 2-D convolution stored as Conv3d with temporal kernel 1 (the reference's
    parameter shapes), computed the fastest plain-PyTorch way for its shape: 1x1 as one
    batched GEMM on the [B, C, T*H*W] view (no copy), skinny 3x3 as conv2d over frames."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> None:
        super().__init__(c_in, c_out, (1, kernel, kernel), (1, stride, stride), (0, padding, padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"{type(self).__name__} expects [B, C, T, H, W], got shape {tuple(x.shape)}")
        _, k, _ = self.kernel_size
        if k == 1 and self.stride[1] == 1:
            return self.pointwise(x)
        if self.out_channels <= SKINNY_CONV_CHANNELS:
            B, C, T, H, W = x.shape
            out = self.frames(x.transpose(1, 2).reshape(B * T, C, H, W))
            return out.view(B, T, *out.shape[1:]).transpose(1, 2)
        return super().forward(x)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """This conv on a batch of frames [N, C, H, W] (conv2d; keeps channels-last input so)."""
        return F.conv2d(x, self.weight[:, :, 0], self.bias, self.stride[1:], self.padding[1:])

    def pointwise(self, *parts: torch.Tensor) -> torch.Tensor:
        """This 1x1 conv applied to ``torch.cat(parts, dim=1)`` without building the concatenation
        (:func:`dnerv_fast.ops.reference.pointwise_conv`: batched GEMMs, frame-major output).
        Under autocast the GEMMs run in its type, weights and parts cast first
        (:func:`~dnerv_fast.model.autocast.fused`): autocast leaves the in-place accumulation
        alone, which would then mix types.
        """
        if sum(part.shape[1] for part in parts) != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels, "
                             f"got {sum(part.shape[1] for part in parts)}")
        return fused(self._pointwise, self.weight, self.bias, *parts)

    def _pointwise(self, weight: torch.Tensor, bias: torch.Tensor | None,
                   *parts: torch.Tensor) -> torch.Tensor:
        return ops.reference.pointwise_conv(parts, weight, bias)


class Stem(nn.Module):
    """Positional encoding [B, E, T] -> [B, out, T] through a two-layer 1x1 MLP."""

    def __init__(self, in_chan: int, out_chan: int, hidden: int = 512) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(in_chan, hidden, 1), nn.GELU(),
                                 nn.Conv1d(hidden, out_chan, 1), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class ContentEncoder(nn.Module):
    """Keyframes [B, 3, K, H, W] -> feature pyramid, coarsest first, raw input last.

    Keyframes are independent images, so the convs run as conv2d on the B*K frames. On CPU
    the frames are channels-last, where oneDNN runs these convs fastest (UVG-M, two 256x320
    keyframes, 2 cores: 95 -> 60 ms); the feature levels then come out channels_last_3d.
    """

    def __init__(self, strides: tuple[int, ...], dim: int = 64) -> None:
        super().__init__()
        self.head = nn.Sequential(FrameConv(3, dim, 3, padding=1), nn.GELU())
        self.body = nn.ModuleList(nn.Sequential(FrameConv(dim, dim, s, stride=s), nn.GELU()) for s in strides)

    def forward(self, keyframes: torch.Tensor) -> list[torch.Tensor]:
        B, C, K, H, W = keyframes.shape
        x = keyframes.transpose(1, 2).reshape(B * K, C, H, W)
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        conv, gelu = self.head
        x = gelu(conv.frames(x))
        levels = []
        for conv, gelu in self.body:
            x = gelu(conv.frames(x))
            levels.append(x.view(B, K, *x.shape[1:]).transpose(1, 2))
        return levels[::-1] + [keyframes]


class Head(nn.Module):
    """1x1 conv to C//4, GELU, 3x3 conv to ``out_chan``: the flow heads and the RGB head."""

    def __init__(self, in_chan: int, out_chan: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(FrameConv(in_chan, in_chan // 4), nn.GELU(),
                                  FrameConv(in_chan // 4, out_chan, 3, padding=1))

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        """The head of ``torch.cat(parts, dim=1)``; the concatenation is never built."""
        squeeze, _, spatial = self.conv
        return fused(ops.conv_head, parts, squeeze.weight, squeeze.bias, spatial.weight, spatial.bias)


class ToStyle(nn.Module):
    """Holds the SAF 1x1 conv (64 -> 2C); the modulation itself is the fused op."""

    def __init__(self, content_dim: int, chan: int) -> None:
        super().__init__()
        self.conv = FrameConv(content_dim, 2 * chan)


class DNeRVBlock(nn.Module):
    """SAF modulation, 3x3 conv, PixelShuffle, GELU, global temporal MLP (with residual)."""

    def __init__(self, c_in: int, c_out: int, stride: int, clip_len: int, content_dim: int = 64) -> None:
        super().__init__()
        self.stride = stride
        self.to_style = ToStyle(content_dim, c_in)
        self.conv = FrameConv(c_in, c_out * stride * stride, 3, padding=1)
        self.tfc = nn.Conv2d(c_out * clip_len, c_out * clip_len, 1, groups=c_out)
        for conv in (self.to_style.conv, self.conv):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        x = fused(ops.saf_modulate, x, content, self.to_style.conv.weight, self.to_style.conv.bias)
        y = ops.block_conv3x3(x, self.conv.weight)
        return fused(ops.upsample_tail, y, self.conv.bias, self.stride, self.tfc.weight,
                     self.tfc.bias)
