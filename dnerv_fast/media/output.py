"""Streaming video writers: frames arrive a group at a time and go straight to the output, so
what a decoder holds does not grow with the video's length.

Formats: ``mp4`` (lossless RGB, libx264rgb CRF 0, as :func:`.video_io.write_video`),
``png`` (a folder of numbered frames, :func:`.video_io.png_names`), ``yuv`` (raw planes) and
``y4m``. The two YUV formats take 16-bit RGB (value / 65535) and convert it to the layout
:class:`YuvTarget` gives: a YUV source's own (same depth, chroma format, matrix, range,
siting), or for an RGB source 8-bit 4:4:4, BT.709, full range.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
from PIL import Image

from dnerv_fast.errors import VideoWriteError
from dnerv_fast.media.video_io import _fps_fraction, png_names
from dnerv_fast.media.y4m import Y4mWriter
from dnerv_fast.media.yuv import YuvFormat, YuvLayout, rgb_to_yuv, write_frame
from dnerv_fast.media.planar import RGB16_PEAK

FORMATS = ("mp4", "png", "yuv", "y4m")
SUFFIXES = {".mp4": "mp4", ".yuv": "yuv", ".y4m": "y4m"}   # single-file outputs by extension


@dataclass(frozen=True)
class YuvTarget:
    """The YUV layout decoded frames are written in (see the module docstring)."""

    format: YuvFormat = YuvFormat("444", 8)
    matrix: str = "bt709"
    range: str = "full"
    siting: str | None = None

    @classmethod
    def of(cls, entry: dict) -> YuvTarget:
        """The target for a header video entry (version 2 entries and RGB sources: the
        default)."""
        if entry.get("chroma", "rgb") == "rgb":
            return cls()
        return cls(YuvFormat(entry["chroma"], entry["bit_depth"]), entry["matrix"],
                   entry["range"], entry.get("siting"))

    def planes(self, rgb16: np.ndarray) -> list[np.ndarray]:
        return rgb_to_yuv(rgb16.astype(np.float64) / RGB16_PEAK, self.format, self.matrix,
                          self.range)


def depth_for(fmt: str) -> int:
    """Bits the renderer should give a writer of ``fmt``: 16 for the YUV formats."""
    return 16 if fmt in ("yuv", "y4m") else 8


class FrameWriter:
    """Writes frames of one video, group by group; :meth:`close` finishes the output."""

    def __init__(self, fmt: str, target: Path | BinaryIO, width: int, height: int,
                 fps: float, total: int, yuv: YuvTarget | None = None) -> None:
        if fmt not in FORMATS:
            raise VideoWriteError(f"unknown output format '{fmt}' (use {', '.join(FORMATS)})")
        self.fmt, self.count, self.total = fmt, 0, total   # total: frames to come (png names)
        self.yuv = yuv or YuvTarget()
        self._own = None
        try:
            if fmt == "mp4":
                self._container = av.open(str(target), "w", format="mp4")
                self._stream = self._container.add_stream("libx264rgb", rate=_fps_fraction(fps))
                self._stream.width, self._stream.height = width, height
                self._stream.pix_fmt = "rgb24"
                self._stream.options = {"crf": "0", "preset": "medium"}
            elif fmt == "png":
                self.folder = Path(target)
                self.folder.mkdir(exist_ok=True)
            else:
                out = target if hasattr(target, "write") else open(target, "wb")
                self._own = None if out is target else out
                self._out = out
                if fmt == "y4m":
                    layout = YuvLayout(width, height, self.yuv.format, fps)
                    self._y4m = Y4mWriter(out, layout, self.yuv.range, self.yuv.siting)
        except (av.FFmpegError, OSError) as e:
            raise VideoWriteError(f"cannot write '{target}': {e}") from e

    def write(self, frames: np.ndarray) -> None:
        """Append frames [n, H, W, 3]: uint8 for mp4/png, uint16 (value / 65535) for yuv/y4m."""
        if self.fmt == "mp4":
            for f in frames:
                for packet in self._stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    self._container.mux(packet)
        elif self.fmt == "png":
            names = png_names(self.total)
            for f, name in zip(frames, names[self.count:]):
                Image.fromarray(f).save(self.folder / name)
        else:
            for f in frames:
                planes = self.yuv.planes(f)
                if self.fmt == "y4m":
                    self._y4m.write(planes)
                else:
                    write_frame(self._out, planes, self.yuv.format)
        self.count += len(frames)

    def close(self) -> None:
        if self.fmt == "mp4":
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        elif self.fmt in ("yuv", "y4m"):
            self._out.flush()
            if self._own is not None:
                self._own.close()
