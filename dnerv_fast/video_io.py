"""Read videos (files or frame folders) into uint8 RGB arrays and write them back.

Files are decoded with PyAV. Written mp4 files are **lossless** (libx264rgb, CRF 0, RGB
24-bit), so writing decoded frames and reading them back gives the same pixels.
Folders of frames are written as zero-padded PNGs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from dnerv_fast.atomic import atomic_dir, atomic_path
from dnerv_fast.errors import VideoReadError, VideoWriteError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FPS = 25.0


@dataclass
class Video:
    """Decoded video: ``frames`` is uint8 [N, H, W, 3] RGB."""

    name: str
    frames: np.ndarray
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


def _check_sizes(frames: list[np.ndarray], source: Path) -> np.ndarray:
    if not frames:
        raise VideoReadError(f"'{source}' holds no video frames")
    first = frames[0].shape
    for i, f in enumerate(frames):
        if f.shape != first:
            raise VideoReadError(
                f"'{source}': frame {i} is {f.shape[1]}x{f.shape[0]} but frame 0 is "
                f"{first[1]}x{first[0]}; all frames must have the same size")
    return np.stack(frames)


def _read_folder(folder: Path, fps: float | None, max_frames: int | None) -> Video:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoReadError(
            f"folder '{folder}' has no image frames (looked for {', '.join(IMAGE_SUFFIXES)})")
    frames = []
    for p in files[:max_frames]:
        try:
            with Image.open(p) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as e:
            raise VideoReadError(f"cannot read image frame '{p}': {e}") from e
    return Video(folder.name, _check_sizes(frames, folder), fps or DEFAULT_FPS)


def _read_file(path: Path, max_frames: int | None) -> Video:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"'{path}' has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.FFmpegError as e:
        raise VideoReadError(f"cannot decode video '{path}': {e}") from e
    fps = float(rate) if rate else DEFAULT_FPS
    return Video(path.stem, _check_sizes(frames, path), fps)


def read_video(path: str | os.PathLike, max_frames: int | None = None,
               fps: float | None = None) -> Video:
    """Read a video file (anything PyAV decodes) or a folder of image frames.

    ``max_frames`` keeps only the first frames; ``fps`` sets the rate of a frame folder
    (files keep their own rate). Raises ``VideoReadError`` for missing, unreadable or empty
    input and for frames of different sizes.
    """
    p = Path(path)
    if not p.exists():
        raise VideoReadError(f"video '{p}' does not exist")
    if max_frames is not None and max_frames < 1:
        raise VideoReadError(f"max_frames must be at least 1, got {max_frames}")
    return _read_folder(p, fps, max_frames) if p.is_dir() else _read_file(p, max_frames)


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    n, h, w, _ = frames.shape
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264rgb", rate=_fps_fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "rgb24"
        stream.options = {"crf": "0", "preset": "medium"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def png_names(count: int) -> list[str]:
    """File names of ``count`` frames written as PNGs: 00001.png, 00002.png, ..."""
    digits = max(5, len(str(count)))
    return [f"{i + 1:0{digits}d}.png" for i in range(count)]


def _write_pngs(frames: np.ndarray, folder: Path) -> None:
    for f, name in zip(frames, png_names(len(frames))):
        Image.fromarray(f).save(folder / name)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = DEFAULT_FPS,
                fmt: str = "mp4", overwrite: bool = False) -> Path:
    """Write uint8 RGB frames [N, H, W, 3] as a lossless mp4 or a folder of PNGs, atomically.

    Raises ``OutputExistsError`` if ``path`` exists and ``overwrite`` is False.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise VideoWriteError(
            f"expected non-empty uint8 frames [N,H,W,3], got {frames.dtype} {frames.shape}")
    target = Path(path)
    try:
        if fmt == "mp4":
            with atomic_path(target, overwrite) as tmp:
                _write_mp4(frames, tmp, fps)
        elif fmt == "png":
            with atomic_dir(target, overwrite, whole=True) as tmp:
                _write_pngs(frames, tmp)
        else:
            raise VideoWriteError(f"unknown output format '{fmt}' (use mp4 or png)")
    except (av.FFmpegError, OSError) as e:
        raise VideoWriteError(f"cannot write '{target}': {e}") from e
    return target
