"""Index tables of every training clip, and the index plan of an epoch, made on the host.

Rows number the uint8 data of all videos as if concatenated in :func:`all_clips` order:
frame rows (patch-major per video, ``[P * N]`` each), keyframe rows (``[P * K]`` each). A
clip is its frame rows, its two keyframe rows, its frame mask and its row in the per
(video, clip) schedule (time encoding, backward distances).

Planning on the host keeps every shape known there: the distinct keyframes of a batch are
numbered in order of first use, exactly as :func:`~dnerv_fast.clips.data.make_batch` does,
and the unmasked frames are listed as (clip, slot) pairs, so nothing in a step needs the
device to answer a data-dependent question (no ``unique`` or boolean indexing, hence no host
sync), and the batch is the same, value for value, as the host path's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnerv_fast.clips.data import PreparedVideo
from dnerv_fast.configs import ModelConfig
from dnerv_fast.schedule import ClipBatch, clip_inputs


@dataclass(frozen=True)
class StepPlan:
    """One step's indices for one process, as host arrays."""

    which: np.ndarray    # schedule row of each clip (its time encoding and distances)
    frames: np.ndarray   # frame row of each clip's slots, clip-major ([clips * T])
    keys: np.ndarray     # keyframe rows, each distinct keyframe once, in order of first use
    start: np.ndarray    # position in ``keys`` of each clip's start keyframe
    end: np.ndarray
    kept: np.ndarray     # clip position in the batch of each unmasked frame, then its slot
    weight: float        # 1, or 0 for a stand-in clip (this process has no share of the batch)


class ClipTables:
    """Every clip of every patch of ``videos``, in :func:`all_clips` order."""

    def __init__(self, videos: list[PreparedVideo], config: ModelConfig) -> None:
        frame_rows, key_rows, masks, schedule_rows, times = [], [], [], [], []
        frame_base = key_base = schedule_base = 0
        for v in videos:
            P, N, K = v.patches, v.length, len(v.key_indices)
            slot = {frame: i for i, frame in enumerate(v.key_indices)}
            sched = np.array([c.frames for c in v.clips])                         # [C, T]
            starts = np.array([slot[c.start_key] for c in v.clips])
            ends = np.array([slot[c.end_key] for c in v.clips])
            for p in range(P):
                frame_rows.append(frame_base + p * N + sched)
                key_rows.append(np.stack([key_base + p * K + starts, key_base + p * K + ends], 1))
                masks.append(np.array([c.mask for c in v.clips]))
                schedule_rows.append(schedule_base + np.arange(len(v.clips)))
            times += v.clips
            frame_base += P * N
            key_base += P * K
            schedule_base += len(v.clips)
        self.frame_rows = np.concatenate(frame_rows)                               # [C, T]
        self.key_rows = np.concatenate(key_rows)                                   # [C, 2]
        self.masks = np.concatenate(masks)                                         # [C, T]
        self.schedule_rows = np.concatenate(schedule_rows)                         # [C]
        self.inputs: ClipBatch = clip_inputs(times, config.embed_levels, config.embed_base)

    def __len__(self) -> int:
        return len(self.key_rows)

    def plan(self, order: list[int], batch_size: int, rank: int = 0,
             world_size: int = 1) -> list[StepPlan]:
        """The steps of an epoch drawn in ``order``, for process ``rank`` of ``world_size``.

        The process takes every world_size-th clip of each batch of ``order``; with no clip
        of a batch it takes the batch's first with weight 0.
        """
        steps = []
        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            share, weight = batch[rank::world_size], 1.0
            if not share:
                share, weight = batch[:1], 0.0
            clips = np.asarray(share, dtype=np.int64)
            used = self.key_rows[clips].reshape(-1)            # start, end of clip 0, then 1 ...
            rows, first_use, where = np.unique(used, return_index=True, return_inverse=True)
            by_use = np.argsort(first_use, kind="stable")
            rank_of = np.empty_like(by_use)
            rank_of[by_use] = np.arange(len(by_use))
            local = rank_of[where.reshape(-1)].reshape(-1, 2)
            kept_clip, kept_slot = np.nonzero(self.masks[clips])
            steps.append(StepPlan(self.schedule_rows[clips], self.frame_rows[clips].reshape(-1),
                                  rows[by_use], local[:, 0], local[:, 1],
                                  np.concatenate([kept_clip, kept_slot]), weight))
        return steps
