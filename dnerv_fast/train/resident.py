"""Training data held once on the training device, with batches gathered there by index.

:class:`ResidentClips` copies every prepared video to the device once, as uint8 (frames,
keyframes, visibility), next to per-clip index tables made once (frame rows, keyframe rows,
frame masks, time encodings and backward distances). A step then gathers its batch on the
device from a few index tensors: no Python over clips and no host-to-device copy but the
indices.

The indices of a whole epoch are planned on the host when the epoch's clip order is drawn
(:meth:`ResidentClips.plan`) and copied to the device in one transfer. Planning on the host
keeps every shape known there: the distinct keyframes of a batch are numbered in order of
first use, exactly as :func:`~dnerv_fast.clips.data.make_batch` does, and the unmasked frames
are listed as (clip, slot) pairs, so nothing in a step needs the device to answer a
data-dependent question (no ``unique`` or boolean indexing, hence no host sync), and the
batch is the same, value for value, as the host path's.

Memory: :func:`resident_bytes` states what the data takes on the device (about one byte per
training pixel and channel, plus keyframes and, for inpainting, one byte per pixel). The data
must fit the device: training refuses, with that figure, a set that does not (streaming
chunks of a larger set is not implemented). On the CPU the "device" is the host memory the
prepared videos already use; their uint8 tensors are concatenated once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dnerv_fast.clips.data import Batch, PreparedVideo
from dnerv_fast.configs import ModelConfig
from dnerv_fast.errors import CodecError
from dnerv_fast.schedule import ClipBatch, clip_inputs

# The share of free device memory the resident data may take; the rest is the network's.
DEVICE_SHARE = 0.5


class DataTooLarge(CodecError):
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
    """Where one step's indices lie in the epoch's flat index tensor."""

    clips: slice     # rows of this process's clips in the clip tables
    keys: slice      # keyframe rows, each distinct keyframe once, in order of first use
    start: slice     # row in ``keys`` of each clip's start keyframe
    end: slice
    kept: slice      # clip position in the batch of each unmasked frame, then its slot
    weight: float    # 1, or 0 for a stand-in clip (this process has no share of the batch)


class ResidentClips:
    """Every clip of every patch of ``videos`` on ``device``, in :func:`all_clips` order."""

    def __init__(self, videos: list[PreparedVideo], config: ModelConfig,
                 device: torch.device) -> None:
        need = resident_bytes(videos)
        _check_fits(need, device)
        self.nbytes = need
        self.device = device
        frame_rows, key_rows, masks, times, clip_rows = [], [], [], [], []
        frames, keys, seen = [], [], []
        masked = any(v.visible is not None for v in videos)
        frame_base = key_base = 0
        schedule_base = 0
        for v in videos:
            assert v.frames is not None, "training videos carry their frames"
            P, N = v.patches, v.length
            K = len(v.key_indices)
            slot = {frame: i for i, frame in enumerate(v.key_indices)}
            sched = np.array([c.frames for c in v.clips])                         # [C, T]
            starts = np.array([slot[c.start_key] for c in v.clips])
            ends = np.array([slot[c.end_key] for c in v.clips])
            for p in range(P):
                frame_rows.append(frame_base + p * N + sched)
                key_rows.append(np.stack([key_base + p * K + starts, key_base + p * K + ends], 1))
                masks.append(np.array([c.mask for c in v.clips]))
                clip_rows.append(schedule_base + np.arange(len(v.clips)))
            times += v.clips
            frames.append(v.frames.flatten(0, 1))
            keys.append(v.keyframes.flatten(0, 1))
            if masked:
                vis = v.visible if v.visible is not None else \
                    torch.ones_like(v.frames[:, :, :1], dtype=torch.bool)
                seen.append(vis.flatten(0, 1))
            frame_base += P * N
            key_base += P * K
            schedule_base += len(v.clips)
        # Host tables for planning; device tables for gathering.
        self._key_rows = np.concatenate(key_rows)                                  # [C, 2]
        self._masks = np.concatenate(masks)                                        # [C, T]
        self.clip_len = config.clip_len
        self.frames = torch.cat(frames).to(device)                                 # uint8 [F, 3, ph, pw]
        self.keyframes = torch.cat(keys).to(device)                                # uint8 [K, 3, ph, pw]
        self.visible = torch.cat(seen).to(device) if masked else None              # bool [F, 1, ph, pw]
        self.frame_rows = torch.from_numpy(np.concatenate(frame_rows)).to(device)  # long [C, T]
        self.schedule_rows = torch.from_numpy(np.concatenate(clip_rows)).to(device)
        inputs = clip_inputs(times, config.embed_levels, config.embed_base)
        self.inputs = inputs.to(device)       # per (video, clip): time encoding, distances, masks

    def __len__(self) -> int:
        return len(self._key_rows)

    def plan(self, order: list[int], batch_size: int, rank: int = 0,
             world_size: int = 1) -> tuple[torch.Tensor, list[StepIndex]]:
        """The indices of an epoch: one flat long tensor on the device, and each step's slices.

        Process ``rank`` of ``world_size`` takes every world_size-th clip of each batch of
        ``order``; with no clip of a batch it takes the batch's first with weight 0.
        """
        parts: list[np.ndarray] = []
        steps: list[StepIndex] = []
        at = 0

        def put(values: np.ndarray) -> slice:
            nonlocal at
            parts.append(values)
            at += len(values)
            return slice(at - len(values), at)

        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            share, weight = batch[rank::world_size], 1.0
            if not share:
                share, weight = batch[:1], 0.0
            clips = np.asarray(share, dtype=np.int64)
            used = self._key_rows[clips].reshape(-1)           # start, end of clip 0, then 1 ...
            rows, first_use, where = np.unique(used, return_index=True, return_inverse=True)
            by_use = np.argsort(first_use, kind="stable")
            rank_of = np.empty_like(by_use)
            rank_of[by_use] = np.arange(len(by_use))
            local = rank_of[where.reshape(-1)].reshape(-1, 2)
            kept_clip, kept_slot = np.nonzero(self._masks[clips])
            steps.append(StepIndex(put(clips), put(rows[by_use]), put(local[:, 0]),
                                   put(local[:, 1]), put(np.concatenate([kept_clip, kept_slot])),
                                   weight))
        flat = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        if self.device.type == "cuda":
            flat = flat.pin_memory().to(self.device, non_blocking=True)
        return flat, steps

    def batch(self, flat: torch.Tensor, step: StepIndex) -> Batch:
        """The batch of one planned step, gathered on the device."""
        clips = flat[step.clips]
        rows = self.frame_rows[clips]                                            # [B, T]
        target = self.frames[rows].permute(0, 2, 1, 3, 4).contiguous()          # [B, 3, T, ph, pw]
        visible = None
        if self.visible is not None:
            visible = self.visible[rows].permute(0, 2, 1, 3, 4).contiguous().float()
        which = self.schedule_rows[clips]
        inputs = ClipBatch(self.inputs.embed_input[which], self.inputs.backward_distance[which],
                           self.inputs.mask[which])
        kept = flat[step.kept].view(2, -1)
        return Batch(inputs, self.keyframes[flat[step.keys]].float().div_(255),
                     flat[step.start], flat[step.end], target.float().div_(255), visible, kept)

    def epoch(self, order: list[int], batch_size: int, rank: int = 0,
              world_size: int = 1) -> Iterator[tuple[Batch, float]]:
        """Every batch of an epoch and this process's weight for it."""
        flat, steps = self.plan(order, batch_size, rank, world_size)
        for step in steps:
            yield self.batch(flat, step), step.weight


def _check_fits(need: int, device: torch.device) -> None:
    if device.type != "cuda":
        return
    free, _ = torch.cuda.mem_get_info(device)
    if need > DEVICE_SHARE * free:
        raise DataTooLarge(f"the training data takes {need / 2**30:.1f} GiB as uint8 but "
                           f"{device} has {free / 2**30:.1f} GiB free (at most "
                           f"{DEVICE_SHARE:.0%} of it is used for data); train on fewer or "
                           f"shorter videos (--max-frames), or on a larger GPU")
