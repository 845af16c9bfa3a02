"""D-NeRV (CVPR 2023), faithful to the reference: same math, same state_dict keys."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import record_function

from .. import ops
from ..configs import ModelConfig, get_config
from . import autocast
from .layers import ContentEncoder, DNeRVBlock, Head, Stem

KeyPair = tuple[torch.Tensor, torch.Tensor]


class DNeRV(nn.Module):
    """One network for many videos, conditioned on each clip's two keyframes.

    ``forward(embed_input [B, E, T], keyframe [B, 3, 2, H, W], backward_distance [B, T])``
    returns frames [B, 3, T, H, W] in [0, 1]. Keyframes are normalised with the
    configuration's mean/std (:meth:`normalize`). The hot operations run through
    :mod:`dnerv_fast.ops`, so the backend is chosen at run time.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        gh, gw = config.stem_grid
        widths = config.stage_widths()
        self.stem = Stem(config.embed_length, config.fc_dim * gh * gw, config.stem_dim)
        self.encoder = ContentEncoder(config.strides[::-1], config.encoder_dim)
        self.norm = nn.InstanceNorm3d(widths[0])
        self.decoder_list = nn.ModuleList(
            DNeRVBlock(widths[i], widths[i + 1], s, config.clip_len, config.encoder_dim)
            for i, s in enumerate(config.strides))
        self.flow_pred_list = nn.ModuleList(Head(w, 4) for w in widths)
        self.rgb_head_layer = Head(widths[-1] + 3, 3)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, name: str | ModelConfig, **overrides) -> "DNeRV":
        """``DNeRV.from_config('uvg-M')``; names: uvg-XS..XL, ucf101-S..L, tiny."""
        config = name if isinstance(name, ModelConfig) else get_config(name, **overrides)
        return cls(config)

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, 3, K, H, W] frames in [0, 1] -> network keyframe input."""
        return (frames - self.mean.to(frames.dtype)) / self.std.to(frames.dtype)

    def encode_keyframes(self, keyframe: torch.Tensor) -> list[torch.Tensor]:
        """Normalised keyframes [B, 3, K, H, W] -> content pyramid, coarsest first (last: input).

        Keyframes are encoded independently, so K may be any number: encode each distinct
        keyframe of a video once and pair levels up per clip for :meth:`decode`.
        """
        self._check_keyframes(keyframe)
        with record_function("dnerv_fast::keyframe_encoder"):
            return self.encoder(keyframe)

    def forward(self, embed_input: torch.Tensor, keyframe: torch.Tensor,
                backward_distance: torch.Tensor) -> torch.Tensor:
        if keyframe.dim() != 5 or keyframe.shape[2] != 2:
            raise ValueError(f"keyframe must be [B, 3, 2, H, W], got shape {tuple(keyframe.shape)}")
        levels = self.encode_keyframes(keyframe)
        return self.decode(embed_input, [(f[:, :, 0], f[:, :, 1]) for f in levels], backward_distance)

    def decode_clips(self, embed_input: torch.Tensor, keyframes: torch.Tensor, start: torch.Tensor,
                     end: torch.Tensor, backward_distance: torch.Tensor) -> torch.Tensor:
        """Decode B clips whose keyframes are rows of ``keyframes``, each encoded once.

        keyframes: normalised [U, 3, ph, pw], the distinct keyframes of the batch (a keyframe
        shared by neighbouring clips appears once); start, end: long [B] rows of each clip's
        keyframes. Same result as :meth:`forward` on per-clip keyframe pairs, with no
        Python-side data dependence, so it can be compiled or captured in a CUDA graph.
        """
        levels = self.encode_keyframes(keyframes.unsqueeze(2))
        return self.decode(embed_input, [(lv[start, :, 0], lv[end, :, 0]) for lv in levels], backward_distance)

    def decode(self, embed_input: torch.Tensor, key_pairs: list[KeyPair],
               backward_distance: torch.Tensor) -> torch.Tensor:
        """Frames from the time encoding and per-level (start, end) keyframe features [B, C, h, w]."""
        B, T = self._check_inputs(embed_input, backward_distance, key_pairs)
        gh, gw = self.config.stem_grid
        with record_function("dnerv_fast::stem"):
            x = self.stem(embed_input).view(B, -1, gh, gw, T).permute(0, 1, 4, 2, 3)
            start, end = key_pairs[0]
            content = F.interpolate(torch.stack([start, end], dim=2), size=(T, gh, gw),
                                    mode="trilinear", align_corners=False)
            x = self.norm(torch.cat([x, content], dim=1))
        t = backward_distance.to(x.dtype)
        # Each op below is a dnerv_fast:: custom op, named in profiles (docs/kernels.md).
        for i, (start, end) in enumerate(key_pairs):
            flow = self.flow_pred_list[i](x)
            fused = autocast.fused(ops.flow_warp, start, end, flow, t)
            if i < len(self.decoder_list):
                x = self.decoder_list[i](x, fused)
            else:
                x = self.rgb_head_layer(x, fused)
        return (x * self.std.to(x.dtype) + self.mean.to(x.dtype)).clamp(0, 1)

    def _check_keyframes(self, keyframe: torch.Tensor) -> None:
        ph, pw = self.config.patch_size
        if keyframe.dim() != 5 or keyframe.shape[1] != 3 or keyframe.shape[3:] != (ph, pw):
            raise ValueError(f"keyframes must be [B, 3, K, {ph}, {pw}] for this configuration, "
                             f"got shape {tuple(keyframe.shape)}")
        if not keyframe.is_floating_point():
            raise TypeError(f"keyframes must be normalised floats, got {keyframe.dtype}")

    def _check_inputs(self, embed_input: torch.Tensor, backward_distance: torch.Tensor,
                      key_pairs: list[KeyPair]) -> tuple[int, int]:
        E, T = self.config.embed_length, self.config.clip_len
        if embed_input.dim() != 3 or embed_input.shape[1:] != (E, T):
            raise ValueError(f"embed_input must be [B, {E}, {T}] (see dnerv_fast.schedule.clip_inputs), "
                             f"got shape {tuple(embed_input.shape)}")
        B = embed_input.shape[0]
        if backward_distance.shape != (B, T):
            raise ValueError(f"backward_distance must be [{B}, {T}], got shape {tuple(backward_distance.shape)}")
        if len(key_pairs) != len(self.decoder_list) + 1:
            raise ValueError(f"need {len(self.decoder_list) + 1} keyframe feature levels, got {len(key_pairs)}")
        device = self.stem.mlp[0].weight.device
        for name, x in (("embed_input", embed_input), ("backward_distance", backward_distance),
                        ("keyframe", key_pairs[-1][0])):
            if x.device != device:
                raise ValueError(f"{name} is on {x.device} but the model is on {device}")
        return B, T
