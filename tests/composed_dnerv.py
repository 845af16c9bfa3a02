"""An independent, straightforward torch composition of the D-NeRV forward pass.

It uses the model's parameters but none of its code or of dnerv_fast.ops: grid_sample on
T-fold expanded keyframes, the style tensor split by a view, the 8-D PixelShuffle permute,
and the grouped Conv2d for GTMLP, as the published code does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _conv(module, x, pad):
    return F.conv3d(x, module.weight, module.bias, padding=(0, pad, pad))


def _head(head, x):
    return _conv(head.conv[2], F.gelu(_conv(head.conv[0], x, 0)), 1)


def _warp(key, flow):
    B, _, T, H, W = flow.shape
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    grid = torch.stack([xs, ys], -1).float().to(flow)
    coords = grid + flow.permute(0, 2, 3, 4, 1).reshape(B * T, H, W, 2)
    coords = 2 * coords / torch.tensor([max(W - 1, 1), max(H - 1, 1)]).to(coords) - 1
    frames = key.permute(0, 2, 1, 3, 4).expand(-1, T, -1, -1, -1).reshape(B * T, -1, H, W)
    out = F.grid_sample(frames, coords, padding_mode="border", align_corners=True)
    return out.view(B, T, -1, H, W).permute(0, 2, 1, 3, 4)


def composed_forward(model, embed_input, keyframe, backward_distance):
    cfg = model.config
    B, _, T = embed_input.shape
    gh, gw = cfg.stem_grid
    t = backward_distance.view(B, 1, T, 1, 1)
    x = keyframe
    levels = [x]
    x = F.gelu(_conv(model.encoder.head[0], x, 1))
    for stage in model.encoder.body:
        conv = stage[0]
        x = F.gelu(F.conv3d(x, conv.weight, conv.bias, stride=conv.stride))
        levels.append(x)
    levels = levels[::-1]
    out = model.stem.mlp[0](embed_input)
    out = F.gelu(model.stem.mlp[2](F.gelu(out)))
    out = out.view(B, -1, gh, gw, T).permute(0, 1, 4, 2, 3)
    content = F.interpolate(levels[0], scale_factor=(T / 2, 1, 1), mode="trilinear")
    out = F.instance_norm(torch.cat([out, content], 1))
    for i, level in enumerate(levels):
        flow = _head(model.flow_pred_list[i], out)
        fused = (1 - t) * _warp(level[:, :, :1], flow[:, :2]) + t * _warp(level[:, :, 1:], flow[:, 2:])
        if i == len(levels) - 1:
            out = _head(model.rgb_head_layer, torch.cat([out, fused], 1))
            break
        block = model.decoder_list[i]
        C = out.shape[1]
        style = _conv(block.to_style.conv, fused, 0).view(B, 2, C, T, *out.shape[-2:])
        out = out * (style[:, 0] + 1) + style[:, 1]
        y = _conv(block.conv, out, 1)
        s = block.stride
        Cs, _, H, W = y.shape[1:]
        y = y.view(B, Cs // (s * s), 1, s, s, T, H, W).permute(0, 1, 5, 2, 6, 3, 7, 4)
        y = F.gelu(y.reshape(B, Cs // (s * s), T, H * s, W * s))
        Co = y.shape[1]
        mix = F.conv2d(y.reshape(B, Co * T, H * s, W * s), block.tfc.weight, block.tfc.bias, groups=Co)
        out = y + mix.view_as(y)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1, 1).to(out)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1, 1).to(out)
    return (out * std + mean).clamp(0, 1)
