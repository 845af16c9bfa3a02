"""Training data that does not fit the device, streamed to it in chunks of steps.

The data stays where the prepared videos hold it, in host memory. An epoch's steps are
planned exactly as for resident data (:meth:`ClipTables.plan`: the same clip order, drawn
over the whole set), then cut, in order, into chunks of consecutive steps whose rows fit one
chunk buffer. A chunk is the sorted distinct frame, keyframe and visibility rows its steps
read, gathered on the host into a staging buffer (pinned on CUDA) and copied to the device
while the previous chunk trains: double buffering on a side CUDA stream
(:mod:`dnerv_fast.train.prefetch`), not a DataLoader. The steps' indices are renumbered into
the chunk's rows, so every batch equals the resident path's value for value and training
gives the same numbers; what streaming costs is the host gather, on a worker thread.

Memory: the device holds two chunk buffers of :attr:`StreamedClips.chunk_bytes` each, half of
:func:`~dnerv_fast.train.resident.data_budget` (by default half the free GPU memory), plus
the per (video, clip) inputs; :meth:`StreamedClips.describe` states it. On the CPU the
buffers are ordinary tensors and nothing is copied, but the chunks are cut and gathered the
same way (a small ``budget`` makes several).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Iterator

import numpy as np
import torch

from dnerv_fast.clips.data import Batch, PreparedVideo
from dnerv_fast.configs import ModelConfig
from dnerv_fast.train.clip_tables import ClipTables, StepPlan
from dnerv_fast.train.prefetch import SLOTS, CudaTransport, HostTransport, stream_chunks
from dnerv_fast.train.resident import (ClipData, DataTooLarge, budget_source, data_budget, pack,
                                       resident_bytes, visibility)


@dataclass(frozen=True)
class Chunk:
    """Consecutive steps of an epoch and the rows they read, indices local to the chunk."""

    frames: np.ndarray        # sorted global frame rows
    keys: np.ndarray          # sorted global keyframe rows
    steps: list[StepPlan]     # frames and keys renumbered into the rows above


class _Rows:
    """Per-video uint8 (or bool) tensors read as one table of rows [R, *row]."""

    def __init__(self, parts: list[torch.Tensor]) -> None:
        self.parts = [p.flatten(0, 1) for p in parts]
        self.bases = np.cumsum([0] + [len(p) for p in self.parts])

    def gather(self, rows: np.ndarray, out: torch.Tensor) -> None:
        """``out[i] = row rows[i]`` for sorted ``rows``: one index_select per video."""
        cut = np.searchsorted(rows, self.bases)
        for part, base, a, b in zip(self.parts, self.bases, cut, cut[1:]):
            if a < b:
                torch.index_select(part, 0, torch.from_numpy(rows[a:b] - base), out=out[a:b])


class StreamedClips:
    """Every clip of every patch of ``videos``, streamed to ``device`` in chunks."""

    def __init__(self, videos: list[PreparedVideo], config: ModelConfig,
                 device: torch.device, budget: int = 0) -> None:
        self.device = device
        self.tables = ClipTables(videos, config)
        self.nbytes = resident_bytes(videos)
        limit = data_budget(device, budget)
        self.chunk_bytes = self.nbytes if limit is None else limit // SLOTS
        self._source = budget_source(device, budget)
        self.frames = _Rows([v.frames for v in videos])
        self.keyframes = _Rows([v.keyframes for v in videos])
        masked = any(v.visible is not None for v in videos)
        self.visible = _Rows([visibility(v) for v in videos]) if masked else None
        self.row_shape = tuple(videos[0].frames.shape[2:])                 # (3, ph, pw)
        self.inputs = self.tables.inputs.to(device)
        self.transport = CudaTransport(self.chunk_bytes, device) if device.type == "cuda" \
            else HostTransport(self.chunk_bytes)

    def __len__(self) -> int:
        return len(self.tables)

    def describe(self) -> str:
        return (f"streaming the training data ({_size(self.nbytes)} as uint8) to "
                f"{self.device} in chunks of at most {_size(self.chunk_bytes)}, "
                f"{SLOTS} on the device at a time ({self._source})")

    def _row_bytes(self) -> tuple[int, int]:
        """Bytes of one frame (or keyframe) row, and of one visibility row (0 unmasked)."""
        pixels = self.row_shape[1] * self.row_shape[2]
        return pixels * self.row_shape[0], pixels if self.visible is not None else 0

    def _bytes(self, frames: int, keys: int) -> int:
        frame, seen = self._row_bytes()
        return frames * (frame + seen) + keys * frame

    def chunks(self, plans: list[StepPlan]) -> list[Chunk]:
        """``plans`` cut, in order, into chunks that fit :attr:`chunk_bytes` (a step's rows
        counted with repeats: an upper bound of the distinct rows the chunk holds)."""
        groups: list[list[StepPlan]] = [[]]
        used = 0
        for p in plans:
            cost = self._bytes(len(p.frames), len(p.keys))
            if cost > self.chunk_bytes:
                raise DataTooLarge(f"one batch reads {_size(cost)} of data but the chunks "
                                   f"streamed to {self.device} hold at most "
                                   f"{_size(self.chunk_bytes)} ({self._source}); "
                                   f"use a smaller batch")
            if groups[-1] and used + cost > self.chunk_bytes:
                groups.append([])
                used = 0
            groups[-1].append(p)
            used += cost
        return [_chunk(g) for g in groups if g]

    def _write(self, chunk: Chunk, buffer: torch.Tensor) -> int:
        data = self._views(chunk, buffer)
        self.frames.gather(chunk.frames, data.frames)
        self.keyframes.gather(chunk.keys, data.keyframes)
        if self.visible is not None:
            self.visible.gather(chunk.frames, data.visible)
        return self._bytes(len(chunk.frames), len(chunk.keys))

    def _views(self, chunk: Chunk, buffer: torch.Tensor) -> ClipData:
        """The chunk's frames, keyframes and visibility as views of ``buffer``, in that order."""
        frame, seen = self._row_bytes()
        nf, nk = len(chunk.frames), len(chunk.keys)
        frames = buffer[:nf * frame].view(nf, *self.row_shape)
        keys = buffer[nf * frame:(nf + nk) * frame].view(nk, *self.row_shape)
        visible = None
        if self.visible is not None:
            at = (nf + nk) * frame
            visible = buffer[at:at + nf * seen].view(torch.bool).view(nf, 1, *self.row_shape[1:])
        return ClipData(frames, keys, visible, self.inputs)

    def epoch(self, order: list[int], batch_size: int, rank: int = 0,
              world_size: int = 1) -> Iterator[tuple[Batch, float]]:
        """Every batch of an epoch and this process's weight for it, as the resident path's."""
        chunks = self.chunks(self.tables.plan(order, batch_size, rank, world_size))
        flat, steps = pack([p for c in chunks for p in c.steps], self.device)
        planned = iter(steps)
        for buffer, chunk in stream_chunks(chunks, lambda c: partial(self._write, c),
                                           self.transport):
            data = self._views(chunk, buffer)
            for _ in chunk.steps:
                step = next(planned)
                yield data.batch(flat, step), step.weight


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def _chunk(steps: list[StepPlan]) -> Chunk:
    frames = np.unique(np.concatenate([p.frames for p in steps]))
    keys = np.unique(np.concatenate([p.keys for p in steps]))
    return Chunk(frames, keys, [replace(p, frames=np.searchsorted(frames, p.frames),
                                        keys=np.searchsorted(keys, p.keys)) for p in steps])
