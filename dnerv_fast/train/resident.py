"""Training data held once on the training device, with batches gathered there by index.

:class:`ResidentClips` copies every prepared video to the device once, as uint8 (frames,
keyframes, visibility), next to the per (video, clip) time encodings and distances. The
indices of a whole epoch are planned on the host when its clip order is drawn
(:mod:`dnerv_fast.train.clip_tables`) and copied to the device in one transfer
(:func:`pack`); a step then gathers its batch on the device (:meth:`ClipData.batch`): no
Python over clips and no host-to-device copy but the indices, and the batch is the host
path's value for value.

Memory: :func:`resident_bytes` states what the data takes on the device (about one byte per
training pixel and channel, plus keyframes and, for inpainting, one byte per pixel). It must
fit :func:`data_budget` (by default half the free GPU memory); a larger set is refused here
and streamed by :mod:`dnerv_fast.train.streamed`. On the CPU the "device" is the host memory
the prepared videos already use; their uint8 tensors are concatenated once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dnerv_fast.clips.data import Batch, PreparedVideo
from dnerv_fast.configs import ModelConfig
from dnerv_fast.errors import TrainingError
from dnerv_fast.schedule import ClipBatch
from dnerv_fast.train.clip_tables import ClipTables, StepPlan

# The share of free device memory the resident data may take; the rest is the network's.
DEVICE_SHARE = 0.5


class DataTooLarge(TrainingError):
    """The prepared videos do not fit the training device's memory."""


def resident_bytes(videos: list[PreparedVideo]) -> int:
    """Bytes the uint8 frames, keyframes and visibility masks of ``videos`` take."""
    total = 0
    masked = any(v.visible is not None for v in videos)
    for v in videos:
        assert v.frames is not None, "training videos carry their frames"
        per_frame = v.frames[0, 0].numel()
        total += v.frames.numel() + v.patches * len(v.key_indices) * per_frame
        if masked:
            total += v.frames.numel() // 3
    return total


@dataclass(frozen=True)
class StepIndex:
    """Where one step's indices (a :class:`StepPlan`) lie in a flat index tensor."""

    which: slice
    frames: slice
    keys: slice
    start: slice
    end: slice
    kept: slice
    weight: float


def pack(plans: list[StepPlan], device: torch.device) -> tuple[torch.Tensor, list[StepIndex]]:
    """The steps' indices as one flat long tensor on ``device`` (one transfer), and each
    step's slices of it."""
    parts: list[np.ndarray] = []
    steps: list[StepIndex] = []
    at = 0

    def put(values: np.ndarray) -> slice:
        nonlocal at
        parts.append(values)
        at += len(values)
        return slice(at - len(values), at)

    for p in plans:
        steps.append(StepIndex(put(p.which), put(p.frames), put(p.keys), put(p.start),
                               put(p.end), put(p.kept), p.weight))
    flat = torch.from_numpy(np.concatenate(parts).astype(np.int64))
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    return flat, steps


@dataclass(frozen=True)
class ClipData:
    """uint8 rows a step gathers from (all of the data, or one streamed chunk of it), and
    the per (video, clip) inputs, on the training device."""

    frames: torch.Tensor            # uint8 [F, 3, ph, pw]
    keyframes: torch.Tensor         # uint8 [K, 3, ph, pw]
    visible: torch.Tensor | None    # bool [F, 1, ph, pw]
    inputs: ClipBatch

    def batch(self, flat: torch.Tensor, step: StepIndex) -> Batch:
        """The batch of one planned step, gathered on the device."""
        which = flat[step.which]
        rows = flat[step.frames].view(len(which), -1)                           # [B, T]
        target = self.frames[rows].permute(0, 2, 1, 3, 4).contiguous()          # [B, 3, T, ph, pw]
        visible = None
        if self.visible is not None:
            visible = self.visible[rows].permute(0, 2, 1, 3, 4).contiguous().float()
        inputs = ClipBatch(self.inputs.embed_input[which], self.inputs.backward_distance[which],
                           self.inputs.mask[which])
        kept = flat[step.kept].view(2, -1)
        return Batch(inputs, self.keyframes[flat[step.keys]].float().div_(255),
                     flat[step.start], flat[step.end], target.float().div_(255), visible, kept)


def visibility(v: PreparedVideo) -> torch.Tensor:
    """bool [P, N, 1, ph, pw] of ``v``: its mask, or every pixel visible."""
    assert v.frames is not None, "training videos carry their frames"
    if v.visible is not None:
        return v.visible
    return torch.ones_like(v.frames[:, :, :1], dtype=torch.bool)


class ResidentClips:
    """Every clip of every patch of ``videos`` on ``device``, in :func:`all_clips` order."""

    def __init__(self, videos: list[PreparedVideo], config: ModelConfig,
                 device: torch.device, budget: int = 0) -> None:
        need = resident_bytes(videos)
        limit = data_budget(device, budget)
        if limit is not None and need > limit:
            raise DataTooLarge(f"the training data takes {need / 2**30:.2f} GiB as uint8 but "
                               f"at most {limit / 2**30:.2f} GiB of {device} may hold data "
                               f"({budget_source(device, budget)}); stream it (data 'stream' "
                               f"or 'auto'), or train on fewer or shorter videos (max_frames=)")
        self.nbytes = need
        self.device = device
        self.tables = ClipTables(videos, config)
        masked = any(v.visible is not None for v in videos)
        self.data = ClipData(
            torch.cat([v.frames.flatten(0, 1) for v in videos]).to(device),
            torch.cat([v.keyframes.flatten(0, 1) for v in videos]).to(device),
            torch.cat([visibility(v).flatten(0, 1) for v in videos]).to(device) if masked else None,
            self.tables.inputs.to(device))

    def __len__(self) -> int:
        return len(self.tables)

    def epoch(self, order: list[int], batch_size: int, rank: int = 0,
              world_size: int = 1) -> Iterator[tuple[Batch, float]]:
        """Every batch of an epoch and this process's weight for it."""
        flat, steps = pack(self.tables.plan(order, batch_size, rank, world_size), self.device)
        for step in steps:
            yield self.data.batch(flat, step), step.weight


def data_budget(device: torch.device, budget: int = 0) -> int | None:
    """Bytes of ``device`` the training data may take: ``budget`` when set (> 0), else
    DEVICE_SHARE of the free memory of a GPU; None (no limit) for the CPU, whose data the
    prepared videos already hold."""
    if budget > 0:
        return budget
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(DEVICE_SHARE * free)


def budget_source(device: torch.device, budget: int = 0) -> str:
    """Where :func:`data_budget` comes from, for messages."""
    return "the data memory setting" if budget > 0 else f"{DEVICE_SHARE:.0%} of its free memory"
