"""Inpainting masks: which pixels of each training video are hidden from the encoder.

Two sources, both giving a bool array [N, H, W] per video (True = hole):

- :class:`BoxMasks`: ``count`` square boxes of ``size`` pixels per frame, placed uniformly
  at random inside the frame (boxes may overlap) by a generator seeded with
  (``seed``, video index), drawn frame by frame; the paper's "disperse" masks. They are fixed
  per frame and regenerate exactly from the three numbers, which the .dnerv header stores.
- :class:`VideoMasks`: one user mask video per input video (file or frame folder), of the
  same size and at least as many frames; a pixel is a hole where any channel is 128 or more,
  so a mask that went through a lossy codec still reads as the binary mask it was.

Hidden pixels are filled (:func:`fill_holes`) before anything else sees the frames: the
keyframes are coded from the filled frames and the training targets are the filled frames,
and the loss ignores the holes, so the hidden content reaches neither the file nor the
network.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from dnerv_fast.errors import BitstreamError, CodecError
from dnerv_fast.media.video_io import Video, read_video

HOLE_THRESHOLD = 128


class MaskError(CodecError):
    """Bad mask settings, or a mask that does not fit its video."""


@dataclass(frozen=True)
class BoxMasks:
    """``count`` random ``size`` x ``size`` boxes per frame."""

    count: int
    size: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise MaskError(f"need at least one mask box per frame, got {self.count}")
        if self.size < 1:
            raise MaskError(f"mask boxes must be at least 1 pixel wide, got {self.size}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or \
                not 0 <= self.seed < 2**63:
            raise MaskError(f"the mask seed must be a whole number in 0..2^63-1, got {self.seed!r}")

    def boxes(self, index: int, video: Video) -> np.ndarray:
        """int [N, count, 2]: (top, left) of every box of the ``index``-th video."""
        h, w = video.height, video.width
        if self.size > min(h, w):
            raise MaskError(f"mask boxes of {self.size}x{self.size} do not fit the {w}x{h} "
                            f"frames of '{video.name}'")
        rng = np.random.default_rng([self.seed, index])
        return np.stack([np.stack([rng.integers(0, h - self.size + 1, size=self.count),
                                   rng.integers(0, w - self.size + 1, size=self.count)], 1)
                         for _ in range(video.num_frames)])

    def holes(self, index: int, video: Video) -> np.ndarray:
        """bool [N, H, W] for the ``index``-th video."""
        out = np.zeros((video.num_frames, video.height, video.width), dtype=bool)
        for frame, corners in zip(out, self.boxes(index, video)):
            for top, left in corners:
                frame[top:top + self.size, left:left + self.size] = True
        return out

    def to_header(self) -> dict[str, Any]:
        return {"kind": "boxes", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class VideoMasks:
    """One mask video per input video, in the same order."""

    paths: tuple[str | os.PathLike, ...]

    def holes(self, index: int, video: Video) -> np.ndarray:
        path = self.paths[index]
        mask = read_video(path, max_frames=video.num_frames)
        if (mask.height, mask.width) != (video.height, video.width) or \
                mask.num_frames < video.num_frames:
            raise MaskError(f"mask video '{path}' is {mask.width}x{mask.height} with "
                            f"{mask.num_frames} frames but '{video.name}' is "
                            f"{video.width}x{video.height} with {video.num_frames}")
        return mask.frames.max(axis=-1) >= HOLE_THRESHOLD

    def to_header(self) -> dict[str, Any]:
        return {"kind": "video"}


MaskSource = Union[BoxMasks, VideoMasks]


def video_holes(source: MaskSource, videos: list[Video]) -> list[np.ndarray]:
    """The holes of every video."""
    if isinstance(source, VideoMasks) and len(source.paths) != len(videos):
        raise MaskError(f"{len(videos)} videos need {len(videos)} mask videos, "
                        f"got {len(source.paths)}")
    return [source.holes(i, v) for i, v in enumerate(videos)]


def fill_holes(video: Video, holes: np.ndarray) -> Video:
    """A copy of ``video`` whose hidden pixels hold the mean colour of the frame's visible
    pixels (mid-gray where a frame is all hole)."""
    frames = video.frames.copy()
    for frame, hole in zip(frames, holes):
        seen = frame[~hole]
        gray = HOLE_THRESHOLD * (1 if frames.dtype == np.uint8 else 257)
        frame[hole] = seen.mean(axis=0).round() if len(seen) else gray
    return dataclasses.replace(video, frames=frames)


def masks_from_header(header: dict[str, Any]) -> MaskSource | None:
    """The box masks a .dnerv file was trained with, None without masks.

    A file made with mask videos cannot regenerate them: the caller must pass them again.
    """
    spec = header.get("inpainting")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise BitstreamError("header field 'inpainting' is not an object")
    if spec.get("kind") == "video":
        raise MaskError("this file was trained with mask videos; give them again "
                        "(mask_video=) to evaluate it")
    try:
        if spec.get("kind") != "boxes":
            raise TypeError(f"unknown kind {spec.get('kind')!r}")
        return BoxMasks(int(spec["count"]), int(spec["size"]), int(spec["seed"]))
    except (KeyError, TypeError, ValueError, MaskError) as e:
        raise BitstreamError(f"header field 'inpainting' is invalid: {e}") from e
