"""Serve decoded clips or frames of a .dnerv file as a PyTorch dataset.

This is how a video model trains on compressed videos without writing them out (the paper's
action-recognition experiment trains a classifier on UCF101 decoded from one D-NeRV).

Decoding works in the model's clips (``clip_len`` frames, 8 for every published size): an
item of ``clip_frames`` frames decodes the ``clip_frames / clip_len`` clips it covers, all
patches of a clip in one batch (chunked), keyframes encoded once per batch. Each clip is
always decoded on its own, so a clip's pixels do not depend on which items were asked for
before; they match ``load(path).render(i)`` (which batches neighbouring clips together) up to
an occasional one-level difference of 8-bit float rounding (see :mod:`dnerv_fast.codec.render`).

Processes: the model is rebuilt from the file once per process, the first time that process
decodes, and is never pickled, so DataLoader workers (fork or spawn) each hold their own copy
on the CPU. With ``device="cuda"`` use ``num_workers=0``: the GPU decodes a batch of patches
at once already, and a CUDA context cannot be re-created in a forked worker.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from dnerv_fast.codec.pipeline import load
from dnerv_fast.errors import library_error
from dnerv_fast.media.keyframes import decode_keyframe
from dnerv_fast.codec.render import RENDER_CHUNK, render_clips
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.clips.data import PreparedVideo

Labels = Union[Mapping[str, Any], Callable[[str], Any]]
UNITS = ("clip", "frame")
LAST = ("pad", "drop")
KEYFRAME_VIDEOS = 8  # videos whose decoded keyframes a process keeps at once


@dataclass
class _Decoder:
    """What one process needs to decode: rebuilt per process, never pickled."""

    pid: int
    model: DNeRV
    videos: list[PreparedVideo]
    cache: OrderedDict[tuple[int, int], torch.Tensor] = field(default_factory=OrderedDict)
    keyed: OrderedDict[int, None] = field(default_factory=OrderedDict)  # videos with decoded keyframes


class DNeRVDataset(Dataset):
    """Decoded clips (``unit="clip"``) or frames (``unit="frame"``) of videos in a .dnerv file.

    Args:
        path: the .dnerv file. A missing or damaged file raises
            :class:`~dnerv_fast.errors.CodecError` / ``BitstreamError`` here.
        videos: names of the videos to serve, in this order (default: all, in file order).
        unit: ``"clip"``: items are [3, T, H, W] with T = ``clip_frames``; ``"frame"``: [3, H, W].
        clip_frames: frames per clip item, a multiple of the model's clip length (default: one
            model clip). Clips tile each video from frame 0 without overlap.
        last: what to do with a video's last clip item when it passes the end of the video:
            ``"pad"`` repeats the video's last frame to fill it (the model's own schedule
            pads its inputs the same way), ``"drop"`` leaves it out (so a video shorter than
            ``clip_frames`` gives no items).
        device: where decoding runs and items are made. On a GPU, load with ``num_workers=0``.
        dtype: ``torch.uint8`` for the decoded 8-bit values, or a float dtype for them / 255.
            Either way items are exactly the decoded 8-bit frames.
        labels: a mapping from video name to label, or a function of the name; items are then
            ``(frames, label)``. Resolved once here, so a function need not be picklable.
        transform: applied to every item's frames (after the dtype conversion).
        chunk: patches decoded per forward pass (bounds memory on large frames).
        cache_clips: decoded model clips kept per process, most recently used first; makes
            reading frames or long clips in order cost one decode per model clip. 0 turns it off.
        max_memory: the memory budget the file must fit (bytes, or a size such as ``"12G"``;
            default: a share of the available memory, :mod:`dnerv_fast.codec.memory`).

    Building the dataset reads and checks the whole file: the header, the weights, the
    memory decoding needs, and every keyframe of the file (each decoded once and
    dropped), so a damaged file fails here with a :class:`~dnerv_fast.errors.CodecError`,
    not at the first item. Items that fail to allocate raise
    :class:`~dnerv_fast.errors.OutOfMemoryError` (a ``CodecError``).

    Items are frames at the video's original size, in [0, 1] (float) or 0..255 (uint8), RGB.
    """

    def __init__(self, path: str | os.PathLike, videos: Sequence[str] | None = None,
                 unit: str = "clip", clip_frames: int | None = None, last: str = "pad",
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 labels: Labels | None = None,
                 transform: Callable[[torch.Tensor], Any] | None = None,
                 chunk: int = RENDER_CHUNK, cache_clips: int = 4,
                 max_memory: int | str | None = None) -> None:
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        if unit == "frame" and clip_frames is not None:
            raise ValueError("clip_frames is for unit='clip'; frame items are single frames")
        if last not in LAST:
            raise ValueError(f"last must be one of {LAST}, got {last!r}")
        if dtype != torch.uint8 and not dtype.is_floating_point:
            raise ValueError(f"dtype must be torch.uint8 or a float dtype, got {dtype}")
        if chunk < 1 or cache_clips < 0:
            raise ValueError(f"chunk must be >= 1 and cache_clips >= 0, got {chunk}, {cache_clips}")
        self.path = os.fspath(path)
        self.device = torch.device(device)
        self.unit, self.last, self.dtype = unit, last, dtype
        self.transform, self.chunk, self.cache_clips = transform, chunk, cache_clips

        # Decoded at once: an item's model clips and the cached ones, not whole videos.
        self.max_memory = max_memory

        def frames_at_once(clip_len: int) -> int:
            item = clip_len if clip_frames is None or unit == "frame" else clip_frames
            return item + clip_len * (cache_clips + 1)
        encoded = load(self.path, max_memory=max_memory, frames_at_once=frames_at_once)
        self._frames_at_once = frames_at_once(encoded.model.config.clip_len)  # for workers
        self._check_keyframes(encoded)
        by_name = {v.name: v for v in encoded.videos}
        names = list(by_name) if videos is None else list(videos)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise KeyError(f"{self.path} holds no video named {', '.join(map(repr, unknown))} "
                           f"(it holds {', '.join(map(repr, by_name))})")
        if len(set(names)) != len(names):
            raise ValueError("videos lists a name more than once")
        self.clip_len = encoded.model.config.clip_len
        self.clip_frames = self.clip_len if clip_frames is None else clip_frames
        if self.clip_frames < 1 or self.clip_frames % self.clip_len:
            raise ValueError(f"clip_frames must be a positive multiple of the model's clip "
                             f"length {self.clip_len}, got {self.clip_frames}")
        selected = [by_name[n] for n in names]
        self._names = names
        self._lengths = [v.length for v in selected]
        self._sizes = [(v.height, v.width) for v in selected]
        self._labels = None if labels is None else [_label(labels, n) for n in names]
        self._starts = np.cumsum([0] + [self._items_in(n) for n in self._lengths])
        self._decoder: _Decoder | None = _Decoder(os.getpid(), encoded.model.to(self.device),
                                                  selected)

    # -- what the file holds -------------------------------------------------------------

    @property
    def video_names(self) -> list[str]:
        return list(self._names)

    def num_frames(self, video: str | int) -> int:
        return self._lengths[self._video_index(video)]

    def frame_size(self, video: str | int) -> tuple[int, int]:
        """(height, width) of a video's frames."""
        return self._sizes[self._video_index(video)]

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple[str, int]:
        """(video name, first frame) of item ``index``."""
        v, first = self._locate(index)
        return self._names[v], first

    # -- decoding ------------------------------------------------------------------------

    def _check_keyframes(self, encoded: Any) -> None:
        """Decode every keyframe of the file once (one at a time), so that a damaged one is
        refused now; the decoded pictures are dropped (items decode them again)."""
        for video in encoded.videos:
            for data in video.key_bytes:
                decode_keyframe(data, video.codec, (video.height, video.width))

    def __getitem__(self, index: int) -> Any:
        try:
            return self._item(index)
        except (MemoryError, RuntimeError) as e:   # torch reports allocations as RuntimeError
            known = library_error(e, f"decoding item {index} of '{self.path}'")
            if known is None:
                raise
            raise known from e

    def _item(self, index: int) -> Any:
        v, first = self._locate(index)
        count = self.clip_frames if self.unit == "clip" else 1
        frames = self._frames(v, first, count)                       # [count, 3, H, W] uint8
        frames = frames.permute(1, 0, 2, 3) if self.unit == "clip" else frames[0]
        frames = self._convert(frames)
        if self.transform is not None:
            frames = self.transform(frames)
        return frames if self._labels is None else (frames, self._labels[v])

    def video(self, video: str | int) -> torch.Tensor:
        """All frames of a video as [3, N, H, W] (no padding, no transform, no label)."""
        v = self._video_index(video)
        try:
            return self._convert(self._frames(v, 0, self._lengths[v]).permute(1, 0, 2, 3))
        except (MemoryError, RuntimeError) as e:
            known = library_error(e, f"decoding video {video!r} of '{self.path}'")
            if known is None:
                raise
            raise known from e

    def _convert(self, frames: torch.Tensor) -> torch.Tensor:
        """A new (never cached, never inference-mode) tensor of the requested dtype."""
        if self.dtype == torch.uint8:
            return frames.clone()
        return frames.to(self.dtype).div_(255)

    def _frames(self, v: int, first: int, count: int) -> torch.Tensor:
        """uint8 frames ``first .. first+count-1`` of video ``v``, the last frame repeated
        past its end, decoding the model clips they lie in."""
        length = self._lengths[v]
        clips = range(first // self.clip_len, math.ceil(min(length, first + count) / self.clip_len))
        decoded = torch.cat([self._clip(v, c) for c in clips])
        wanted = torch.arange(first, first + count).clamp_(max=length - 1)
        return decoded[(wanted - clips[0] * self.clip_len).to(decoded.device)]

    def _clip(self, v: int, clip: int) -> torch.Tensor:
        """uint8 [n, 3, H, W]: the real frames of model clip ``clip`` of video ``v``."""
        state = self._state()
        key = (v, clip)
        if key in state.cache:
            state.cache.move_to_end(key)
            return state.cache[key]
        frames = render_clips(state.model, state.videos, v, [clip], self.chunk, self.device)
        state.keyed[v] = None
        state.keyed.move_to_end(v)
        while len(state.keyed) > KEYFRAME_VIDEOS:  # bound memory over a file of many videos
            state.videos[state.keyed.popitem(last=False)[0]].release_keyframes()
        if self.cache_clips:
            state.cache[key] = frames
            while len(state.cache) > self.cache_clips:
                state.cache.popitem(last=False)
        return frames

    def _state(self) -> _Decoder:
        """This process's decoder, rebuilt from the file in a new process (a worker)."""
        if self._decoder is None or self._decoder.pid != os.getpid():
            encoded = load(self.path, max_memory=self.max_memory,
                           frames_at_once=self._frames_at_once)
            by_name = {v.name: v for v in encoded.videos}
            self._decoder = _Decoder(os.getpid(), encoded.model.to(self.device),
                                     [by_name[n] for n in self._names])
        return self._decoder

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_decoder"] = None
        return state

    # -- indexing ------------------------------------------------------------------------

    def _items_in(self, length: int) -> int:
        if self.unit == "frame":
            return length
        rounding = math.ceil if self.last == "pad" else math.floor
        return rounding(length / self.clip_frames)

    def _locate(self, index: int) -> tuple[int, int]:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for a dataset of {n} items")
        index = int(index) % n
        v = int(np.searchsorted(self._starts, index, side="right")) - 1
        step = 1 if self.unit == "frame" else self.clip_frames
        return v, (index - int(self._starts[v])) * step

    def _video_index(self, video: str | int) -> int:
        if isinstance(video, str):
            if video not in self._names:
                raise KeyError(f"no video named {video!r} in this dataset")
            return self._names.index(video)
        if not -len(self._names) <= video < len(self._names):
            raise IndexError(f"video index {video} is out of range ({len(self._names)} videos)")
        return int(video) % len(self._names)


def _label(labels: Labels, name: str) -> Any:
    if callable(labels):
        return labels(name)
    if name not in labels:
        raise KeyError(f"labels has no entry for video {name!r}")
    return labels[name]
