"""Planar YUV sources (raw ``.yuv`` and ``.y4m``) as videos the codec trains on.

The network sees RGB. A YUV source is converted frame by frame (:func:`~.yuv.yuv_to_rgb`,
BT.709 full range unless told otherwise) to RGB stored as 16-bit integers (value / 65535),
so that a 10-bit source is trained against its full precision, not rounded to 8 bits first.
The :class:`PlanarSource` stays attached to the video: decoding writes YUV in the source's
layout, and evaluation measures against the original planes, read again from the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnerv_fast.errors import VideoReadError
from dnerv_fast.media.y4m import Y4mFile
from dnerv_fast.media.yuv import (DEFAULT_MATRIX, DEFAULT_RANGE, MATRICES, RANGES, Crop,
                                  YuvFile, YuvFormat, resolve_layout, yuv_to_rgb)

PLANAR_SUFFIXES = (".yuv", ".y4m")
RGB16_PEAK = 65535
MAX_VIDEO_BYTES = 16 * 2**30   # RGB16 frames of one source held for training


@dataclass(frozen=True)
class SourceOptions:
    """How to read sources: the raw-YUV layout options (``size`` ``"1920x1080"``,
    ``pix_fmt`` ``"yuv420p10le"``, ``fps``; they fill in what a .yuv name does not say),
    the YUV matrix (``bt601``/``bt709``) and range (``full``/``limited``; a Y4M file's
    XCOLORRANGE tag wins), and a ``crop`` ``"WxH+X+Y"`` applied to every source."""

    size: str | None = None
    pix_fmt: str | None = None
    fps: float | None = None
    matrix: str = DEFAULT_MATRIX
    range: str | None = None
    crop: str | None = None

    def check(self) -> None:
        if self.matrix not in MATRICES:
            raise VideoReadError(f"unknown YUV matrix '{self.matrix}' (use "
                                 f"{', '.join(MATRICES)})")
        if self.range is not None and self.range not in RANGES:
            raise VideoReadError(f"unknown YUV range '{self.range}' (use {', '.join(RANGES)})")
        if self.crop is not None:
            Crop.parse(self.crop)


@dataclass
class PlanarSource:
    """A YUV file opened for reading, with what the header records about it."""

    path: Path
    reader: YuvFile | Y4mFile
    format: YuvFormat
    fps: float
    count: int
    matrix: str
    range: str
    siting: str | None
    crop: Crop | None

    @property
    def width(self) -> int:
        return self.crop.width if self.crop else self.reader.layout.width

    @property
    def height(self) -> int:
        return self.crop.height if self.crop else self.reader.layout.height

    def planes(self, index: int) -> list[np.ndarray]:
        """Frame ``index``'s planes, cropped."""
        planes = self.reader.frame(index)
        return self.crop.planes(planes, self.format) if self.crop else planes

    def rgb(self, index: int) -> np.ndarray:
        """Frame ``index`` as float64 RGB [H, W, 3] in [0, 1]."""
        return yuv_to_rgb(self.planes(index), self.format, self.matrix, self.range)

    def describe(self) -> dict[str, object]:
        """The header's record of the source (see docs/FORMAT.md, version 3)."""
        out: dict[str, object] = {"bit_depth": self.format.bit_depth,
                                  "chroma": self.format.chroma, "matrix": self.matrix,
                                  "range": self.range}
        if self.siting:
            out["siting"] = self.siting
        return out


def open_planar(path: str | os.PathLike, options: SourceOptions | None = None,
                max_frames: int | None = None) -> PlanarSource:
    """Open a .yuv (layout from name and options) or .y4m file, crop checked."""
    options = options or SourceOptions()
    options.check()
    p = Path(path)
    if p.suffix.lower() == ".y4m":
        if options.size or options.pix_fmt:
            raise VideoReadError(f"'{p}' is Y4M, which states its own size and format; "
                                 f"a frame size and pixel format (SourceOptions size, pix_fmt) are for raw "
                                 f".yuv files")
        reader: YuvFile | Y4mFile = Y4mFile(p)
        rng, siting = reader.info.range, reader.info.siting
        fps = options.fps or reader.layout.fps
    else:
        reader = YuvFile(p, resolve_layout(p, options.size, options.pix_fmt, options.fps))
        rng, siting, fps = options.range or DEFAULT_RANGE, None, reader.layout.fps
    lay = reader.layout
    crop = Crop.parse(options.crop) if options.crop else None
    if crop:
        crop.check(lay.width, lay.height, str(p), lay.format)
    count = min(len(reader), max_frames or len(reader))
    source = PlanarSource(p, reader, lay.format, fps, count, options.matrix, rng, siting, crop)
    need = count * source.width * source.height * 3 * 2
    if need > MAX_VIDEO_BYTES:
        raise VideoReadError(f"'{p}': {count} frames of {source.width}x{source.height} need "
                             f"{need / 2**30:.1f} GiB as 16-bit RGB, more than the "
                             f"{MAX_VIDEO_BYTES / 2**30:.0f} GiB a video may take; read fewer "
                             f"frames (max_frames=) or crop")
    return source


def rgb16_frames(source: PlanarSource) -> np.ndarray:
    """uint16 RGB [N, H, W, 3] (value / 65535) of every frame, converted one at a time."""
    out = np.empty((source.count, source.height, source.width, 3), np.uint16)
    for i in range(source.count):
        out[i] = np.rint(source.rgb(i) * RGB16_PEAK)
    return out


def to_rgb8(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB of uint8 or uint16 (value / 65535) RGB frames (rounded to nearest)."""
    if frames.dtype == np.uint8:
        return frames
    return ((frames.astype(np.uint32) * 255 + RGB16_PEAK // 2) // RGB16_PEAK).astype(np.uint8)
