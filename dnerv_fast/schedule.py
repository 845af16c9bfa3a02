"""Clip and keyframe schedule of D-NeRV (the paper's reference code), in 0-based frame indices.

A video of L frames is cut into clips of ``clip_len`` frames. Clip k holds frames
k*n .. k*n+n-1; its start keyframe is frame k*n and its end keyframe min(L-1, (k+1)*n), so
neighbouring clips share keyframes. Frames past the end repeat the last frame and are
masked out of losses and metrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .embedding import positional_encoding


@dataclass(frozen=True)
class Clip:
    """One clip of one video."""

    index: int
    frames: tuple[int, ...]          # frame of each slot, clamped to the last frame
    mask: tuple[bool, ...]           # False for padding slots past the end of the video
    start_key: int
    end_key: int
    backward_distance: tuple[float, ...]
    t_idx: tuple[float, ...]         # (frame) / (L - 1): the network's time input


def frame_time(frame: int, length: int) -> float:
    """Normalised time of a 0-based frame; a one-frame video sits at 0."""
    return frame / (length - 1) if length > 1 else 0.0


def clip_schedule(length: int, clip_len: int = 8) -> list[Clip]:
    """Every clip of a video of ``length`` frames."""
    if length < 1:
        raise ValueError(f"a video needs at least one frame, got length {length}")
    if clip_len < 1:
        raise ValueError(f"clip_len must be positive, got {clip_len}")
    clips = []
    for k in range(math.ceil(length / clip_len)):
        start = k * clip_len
        end = min(length - 1, (k + 1) * clip_len)
        slots = range(start, start + clip_len)
        frames = tuple(min(f, length - 1) for f in slots)
        span = max(1, end - start)
        clips.append(Clip(
            index=k, frames=frames, mask=tuple(f < length for f in slots),
            start_key=start, end_key=end,
            backward_distance=tuple((f - start) / span for f in frames),
            t_idx=tuple(frame_time(f, length) for f in frames),
        ))
    return clips


def keyframe_indices(length: int, clip_len: int = 8) -> list[int]:
    """The distinct keyframes of a video, in order: each is coded (and encoded) once."""
    keys = set()
    for clip in clip_schedule(length, clip_len):
        keys.update((clip.start_key, clip.end_key))
    return sorted(keys)


@dataclass(frozen=True)
class ClipBatch:
    """Network inputs for a batch of clips (everything but the keyframes)."""

    embed_input: torch.Tensor        # [B, 2*levels, T] float32
    backward_distance: torch.Tensor  # [B, T] float32
    mask: torch.Tensor               # [B, T] bool

    def to(self, device: torch.device | str) -> "ClipBatch":
        return ClipBatch(self.embed_input.to(device), self.backward_distance.to(device), self.mask.to(device))


def clip_inputs(clips: list[Clip], levels: int = 240, base: float = 1.25) -> ClipBatch:
    """Stack the time encoding, backward distances and masks of ``clips`` (on the CPU)."""
    if not clips:
        raise ValueError("clip_inputs needs at least one clip")
    t_idx = torch.tensor([c.t_idx for c in clips], dtype=torch.float32)
    return ClipBatch(
        embed_input=positional_encoding(t_idx, levels, base),
        backward_distance=torch.tensor([c.backward_distance for c in clips], dtype=torch.float32),
        mask=torch.tensor([c.mask for c in clips], dtype=torch.bool),
    )
