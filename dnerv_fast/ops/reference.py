"""Plain PyTorch definitions of the hot operations of D-NeRV (the ``reference`` backend).

These are the ground truth every fast backend is tested against. They favour clarity
over speed (the warp materialises a T-fold copy of each keyframe, as the original code does).
"""
from __future__ import annotations

from typing import Callable, Sequence

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


def pointwise_conv(parts: Sequence[torch.Tensor], weight: torch.Tensor,
                   bias: torch.Tensor | None) -> torch.Tensor:
    """1x1 conv (weight [O, C(, 1, 1, 1)]) of ``torch.cat(parts, 1)`` without building the
    concatenation; parts [B, C_i, T, H, W] -> [B, O, T, H, W].

    Per clip, one batched GEMM per part over its frames ([T, C, H*W] strided views of the
    [C, T, H, W] part, no copy), accumulated into one output that starts from the bias.
    The output is frame-major in memory ([B, T, O, H, W], returned as a [B, O, T, H, W]
    view), so a per-frame conv after it needs no copy: the heads' skinny 3x3 (UVG-M RGB head
    1x1 at 256x320: 13.8 -> 7.1 ms with the copy it saves).
    """
    B, _, T, H, W = parts[0].shape
    out_channels = weight.shape[0]
    weight = weight.reshape(out_channels, -1)
    bias = bias if bias is not None else weight.new_zeros(out_channels)
    # unbind, not part[b]: in training, each part[b] would backward into a zero-filled
    # copy of the whole part, one per clip (UVG-XS RGB head: four 84 MB fills a step).
    per_clip = [part.unbind(0) for part in parts]
    clips = []
    for b in range(B):
        out = None
        first = 0
        for clip_parts in per_clip:
            part = clip_parts[b]
            C = part.shape[0]
            w = weight[:, first:first + C].expand(T, -1, -1)
            frames = part.reshape(C, T, H * W).transpose(0, 1)
            if out is None:
                out = torch.baddbmm(bias.view(1, -1, 1).expand(T, -1, H * W), w, frames)
            else:
                out = out.baddbmm_(w, frames)
            first += C
        clips.append(out)
    out = clips[0].unsqueeze(0) if B == 1 else torch.stack(clips)
    return out.view(B, T, out_channels, H, W).transpose(1, 2)


def frame_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """3x3 conv, stride 1, pad 1, of every frame of [B, C, T, H, W] as conv2d over the B*T
    frames (weight [O, C, 1, 3, 3]); for few output channels, where oneDNN skips the
    Conv3d shape and ATen's slow path is 3-8x slower."""
    B, C, T, H, W = x.shape
    out = F.conv2d(x.transpose(1, 2).reshape(B * T, C, H, W), weight[:, :, 0], bias, 1, 1)
    return out.view(B, T, *out.shape[1:]).transpose(1, 2)


def block_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A decoder block's bias-free 3x3 conv (stride 1, pad 1, per frame) of [B, C, T, H, W]
    by weight [O, C, 1, 3, 3]."""
    return F.conv3d(x, weight, None, padding=(0, 1, 1))


def conv_head(parts: Sequence[torch.Tensor], w1: torch.Tensor, b1: torch.Tensor | None,
              w2: torch.Tensor, b2: torch.Tensor | None) -> torch.Tensor:
    """The flow and RGB heads: 1x1 conv (w1 [hidden, C(, 1, 1, 1)]), exact GELU, 3x3 conv
    pad 1 (w2 [O, hidden, 1, 3, 3]) of ``torch.cat(parts, 1)``; returns [B, O, T, H, W]."""
    return frame_conv3x3(F.gelu(pointwise_conv(parts, w1, b1)), w2.reshape(*w2.shape[:2], 1, 3, 3), b2)


def saf_gradients(grad_x_kernel: Callable[..., torch.Tensor], grad_out: torch.Tensor,
                          x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None, needs: Sequence[bool]):
    """The SAF gradients of every backend: grad_x = ``grad_x_kernel(grad_out, fused, W_gamma,
    b_gamma)``, the backend's forward without beta (grad_out * (1 + gamma)); the weight,
    fused and bias gradients from batched GEMMs on grad_out * x (the gamma half) and grad_out
    (the beta half), in float32 for half types. bmm on [B, C, P] views, where matmul and
    einsum would copy both operands into other layouts (UVG-XS step: 82 MB a call)."""
    B, C = x.shape[:2]
    x, fused, weight, grad_out = x.contiguous(), fused.contiguous(), weight.contiguous(), grad_out.contiguous()
    grad_x = grad_f = grad_w = grad_b = None
    if needs[0]:
        grad_x = grad_x_kernel(grad_out, fused, weight[:C].contiguous(),
                               bias[:C].contiguous() if bias is not None else None)
    if x.dtype in (torch.float16, torch.bfloat16):
        x, fused, weight, grad_out = x.float(), fused.float(), weight.float(), grad_out.float()
    if needs[1] or needs[2] or needs[3]:
        grad_beta = grad_out.reshape(B, C, -1)
        grad_gamma = (grad_out * x).reshape(B, C, -1)
        if needs[1]:
            w_t = weight.t().unsqueeze(0).expand(B, -1, -1)
            grad_f = torch.bmm(w_t[:, :, :C], grad_gamma).baddbmm_(w_t[:, :, C:], grad_beta)
            grad_f = grad_f.reshape(fused.shape)
        if needs[2]:
            f_t = fused.reshape(B, fused.shape[1], -1).transpose(1, 2)
            grad_w = torch.cat([torch.bmm(grad_gamma, f_t).sum(0), torch.bmm(grad_beta, f_t).sum(0)])
        if needs[3]:
            grad_b = torch.cat([grad_gamma.sum(dim=(0, 2)), grad_beta.sum(dim=(0, 2))])
    return grad_x, grad_f, grad_w, grad_b


# --- the reference as a backend (dnerv_fast.ops.registry): forward and backward kernels -------

def _backward_by_autograd(op: Callable[..., torch.Tensor], slots: Sequence[int], grad: torch.Tensor,
                          args: Sequence, needs: Sequence[bool]) -> list[torch.Tensor | None]:
    leaves = list(args)
    wanted = [i for need, i in zip(needs, slots) if need]
    for i in wanted:
        leaves[i] = args[i].detach().requires_grad_()
    got: dict[int, torch.Tensor] = {}
    if wanted:
        with torch.enable_grad():
            got = dict(zip(wanted, torch.autograd.grad(op(*leaves), [leaves[i] for i in wanted], grad)))
    return [got.get(i) for i in slots]


def flow_warp_forward(start, end, flow, t) -> torch.Tensor:
    return flow_warp(start, end, flow, t)


def flow_warp_backward(grad, start, end, flow, t, needs):
    return _backward_by_autograd(flow_warp, (0, 1, 2, 3), grad, (start, end, flow, t), needs)


def saf_modulate_forward(x, fused, weight, bias, *, decoding: bool = False) -> torch.Tensor:
    return saf_modulate(x, fused, weight, bias)


def saf_modulate_backward(grad, x, fused, weight, bias, needs):
    return _backward_by_autograd(saf_modulate, (0, 1, 2, 3), grad, (x, fused, weight, bias), needs)


def upsample_tail_forward(y, conv_bias, scale: int, tfc_weight, tfc_bias) -> torch.Tensor:
    return upsample_tail(y, conv_bias, scale, tfc_weight, tfc_bias)


def upsample_tail_backward(grad, y, conv_bias, scale: int, tfc_weight, tfc_bias, needs):
    return _backward_by_autograd(upsample_tail, (0, 1, 3, 4), grad, (y, conv_bias, scale, tfc_weight, tfc_bias),
                                 needs)


def block_conv3x3_forward(x, weight) -> torch.Tensor:
    return block_conv3x3(x, weight)


def conv_head_forward(parts, w1, b1, w2, b2) -> torch.Tensor:
    return conv_head(parts, w1, b1, w2, b2)
