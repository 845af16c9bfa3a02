"""Plain PyTorch definitions of the three hot operations of D-NeRV.

These are the ground truth every fast backend is tested against. They favour clarity
over speed (the warp materialises a T-fold copy of each keyframe, as the original code does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_one(feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``feature`` [B,C,H,W] by pixel-unit ``flow`` [B,2,T,H,W] -> [B,C,T,H,W].

    Bilinear sampling at ``p + flow(p)`` with border padding and align_corners=True.
    """
    B, C, H, W = feature.shape
    T = flow.shape[2]
    # Coordinates in fp32 at least (fp64 stays fp64, so gradcheck is exact).
    work = torch.promote_types(feature.dtype, torch.float32)
    ys, xs = torch.meshgrid(
        torch.arange(H, device=flow.device, dtype=work),
        torch.arange(W, device=flow.device, dtype=work),
        indexing="ij",
    )
    base = torch.stack([xs, ys], dim=-1)  # [H, W, 2] as (x, y)
    coords = base + flow.to(work).permute(0, 2, 3, 4, 1)  # [B, T, H, W, 2]
    # Python-number scales: no tensor built from a list (a host-to-device copy on CUDA).
    grid = torch.stack([2 * coords[..., 0] / max(W - 1, 1), 2 * coords[..., 1] / max(H - 1, 1)], -1) - 1
    frames = feature.unsqueeze(1).expand(B, T, C, H, W).reshape(B * T, C, H, W)
    warped = F.grid_sample(
        frames.to(work), grid.reshape(B * T, H, W, 2), mode="bilinear",
        padding_mode="border", align_corners=True,
    )
    return warped.to(feature.dtype).reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)


def flow_warp(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    """Bidirectional warp with distance blend.

    ``(1 - t) * warp(start, flow[:, 0:2]) + t * warp(end, flow[:, 2:4])``

    start, end: [B, C, H, W] keyframe features; flow: [B, 4, T, H, W] in pixels
    (dx, dy toward start, then dx, dy toward end); t: [B, T] backward distance.
    Returns [B, C, T, H, W].
    """
    tt = t.to(start.dtype)[:, None, :, None, None]
    return (1 - tt) * warp_one(start, flow[:, 0:2]) + tt * warp_one(end, flow[:, 2:4])


def saf_modulate(x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    """Spatially-adaptive fusion: ``x * (1 + gamma) + beta`` with [gamma; beta] = W @ fused + b.

    x: [B, C, T, H, W]; fused: [B, K, T, H, W]; weight: [2C, K]; bias: [2C] or None.
    """
    C = x.shape[1]
    style = torch.einsum("ok,bkthw->bothw", weight, fused)
    if bias is not None:
        style = style + bias[None, :, None, None, None]
    return x * (1 + style[:, :C]) + style[:, C:]


def pixel_shuffle_3d(y: torch.Tensor, scale: int) -> torch.Tensor:
    """nn.PixelShuffle on every frame of [B, C*s*s, T, H, W] -> [B, C, T, H*s, W*s]."""
    B, CSS, T, H, W = y.shape
    C = CSS // (scale * scale)
    y = y.reshape(B, C, scale, scale, T, H, W).permute(0, 1, 4, 5, 2, 6, 3)
    return y.reshape(B, C, T, H * scale, W * scale)


def temporal_mlp(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """GTMLP with residual: ``y[c,t'] = x[c,t'] + sum_t W[c*T+t', t] x[c,t] + b[c*T+t']``.

    x: [B, C, T, H, W]; weight: [C*T, T]; bias: [C*T] or None.
    """
    B, C, T, H, W = x.shape
    mix = torch.einsum("cst,bcthw->bcshw", weight.reshape(C, T, T), x)
    if bias is not None:
        mix = mix + bias.reshape(1, C, T, 1, 1)
    return x + mix


def upsample_tail(y: torch.Tensor, conv_bias: torch.Tensor | None, scale: int,
                  tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None) -> torch.Tensor:
    """Block tail after the bias-free 3x3 conv: +bias, PixelShuffle(s), exact GELU, GTMLP.

    y: [B, C*s*s, T, H, W]; conv_bias: [C*s*s] or None; tfc_weight: [C*T, T];
    tfc_bias: [C*T] or None. Returns [B, C, T, H*s, W*s].
    """
    if conv_bias is not None:
        y = y + conv_bias[None, :, None, None, None]
    g = F.gelu(pixel_shuffle_3d(y, scale))
    return temporal_mlp(g, tfc_weight, tfc_bias)
