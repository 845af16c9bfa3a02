"""Read videos (files or frame folders) into uint8 RGB arrays and write them back.

Files are decoded with PyAV. Written mp4 files are **lossless** (libx264rgb, CRF 0, RGB
24-bit), so writing decoded frames and reading them back gives the same pixels.
Folders of frames are written as zero-padded PNGs.

Image frames are read as 8-bit RGB by these rules:

- 16-bit samples keep their high byte (``x >> 8``), as Pillow does for 16-bit RGB PNGs;
  a 32-bit integer image (mode ``I``) must hold 16-bit values.
- Gray is repeated into the three channels; palettes are looked up.
- Alpha (an alpha channel, a palette's or a PNG's transparent colour) is composited on
  black: ``round(c * a / 255)``. Opaque pixels keep their colour exactly.
- Only PNG, JPEG, WebP, BMP and TIFF files are opened, whatever their name says
  (:mod:`dnerv_fast.media.images`): no decoder that runs another program.
- Other pixel modes (float, CMYK, YCbCr, Lab, ...) and animated or multi-page images are
  refused (a JPEG's extra MPO pictures, previews or depth maps, are ignored).
- Pixels are read as stored: EXIF orientation and colour profiles are not applied.

Video files are converted to RGB by FFmpeg, with alpha (and palettes' alpha) composited on
black the same way. Frames are read as stored: a file asking players to rotate it, and a
variable frame rate (which becomes the constant average rate), each give an
:class:`InputFidelityWarning` saying so. Pipes, FIFOs and devices are refused at once.

Sizes are bounded before anything is decoded: a frame may have at most
``MAX_FRAME_PIXELS`` pixels (what its header declares, so decompression bombs are refused
unread) and a video at most ``MAX_VIDEO_BYTES`` of RGB frames.
"""
from __future__ import annotations

import os
import re
import stat
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from dnerv_fast.atomic import atomic_dir, atomic_path
from dnerv_fast.media.images import ALLOWED_FORMATS, PIL_DATA_ERRORS, open_image
from dnerv_fast.errors import VideoReadError, VideoWriteError
from dnerv_fast.media.planar import (PLANAR_SUFFIXES, PlanarSource, SourceOptions, open_planar,
                                     rgb16_frames)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FPS = 25.0
MAX_FRAME_PIXELS = 8192 * 8192
MAX_VIDEO_BYTES = 16 * 2**30

_GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
_OPAQUE_MODES = ("RGB", "RGBX", "L", "1", "P")


@dataclass
class Video:
    """Decoded video: ``frames`` is uint8 [N, H, W, 3] RGB, or uint16 (value / 65535) for a
    YUV source (``source``: the raw or Y4M file it came from, :mod:`.planar`)."""

    name: str
    frames: np.ndarray
    fps: float
    source: PlanarSource | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


def _check_frame_pixels(width: int, height: int, source: Path) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise VideoReadError(
            f"'{source}' declares {width}x{height} frames, more than the {MAX_FRAME_PIXELS} "
            f"pixels a frame may have")


def _check_video_bytes(count: int, width: int, height: int, source: Path) -> None:
    need = count * width * height * 3
    if need > MAX_VIDEO_BYTES:
        raise VideoReadError(
            f"'{source}': {count} frames of {width}x{height} need {need / 2**30:.1f} GiB, more "
            f"than the {MAX_VIDEO_BYTES / 2**30:.0f} GiB a video may take; read fewer frames "
            f"(max_frames=)")


def _check_same_size(size: tuple[int, int], first: tuple[int, int], what: str,
                     source: Path) -> None:
    if size != first:
        raise VideoReadError(
            f"'{source}': {what} is {size[0]}x{size[1]} but the first frame is "
            f"{first[0]}x{first[1]}; all frames must have the same size")


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    """``np.stack`` that drops each frame once copied, so memory peaks near one video."""
    out = np.empty((len(frames), *frames[0].shape), np.uint8)
    for i in range(len(frames)):
        out[i] = frames[i]
        frames[i] = None
    return out


def natural_key(name: str) -> tuple[tuple, str]:
    """Sort key: digit runs compare by value, text by code point (frame2 < frame10);
    names equal so (a-1, a-01) are ordered by their plain text (a-01 < a-1)."""
    parts = re.split(r"([0-9]+)", name)
    parts[1::2] = [int(d) for d in parts[1::2]]
    return tuple(parts), name


def _frame_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (see :func:`natural_key`); hidden
    files (a name starting with '.', such as macOS's ``._*`` copies) are not frames."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
             and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise VideoReadError(
            f"folder '{folder}' has no image frames (looked for {', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=lambda p: natural_key(p.name))


@contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """Open an image (header only) whose declared size is within ``MAX_FRAME_PIXELS``;
    any failure in the block, decoding included, becomes a ``VideoReadError``."""
    try:
        with open_image(str(path), ALLOWED_FORMATS, f"image frame '{path}'") as im:
            _check_frame_pixels(*im.size, path)
            if im.format != "MPO" and getattr(im, "n_frames", 1) > 1:
                raise VideoReadError(
                    f"image frame '{path}' holds {im.n_frames} images (animated or "
                    f"multi-page); a frame folder needs one image per file")
            yield im
    except Image.DecompressionBombError as e:   # Pillow's own bound, above ours by default
        raise VideoReadError(
            f"'{path}' declares frames of more than the {MAX_FRAME_PIXELS} pixels a frame "
            f"may have") from e
    except PIL_DATA_ERRORS as e:
        raise VideoReadError(f"cannot read image frame '{path}': {e}") from e


def _on_black(rgba: np.ndarray) -> np.ndarray:
    """Composite straight-alpha uint8 RGBA on black, rounding to nearest."""
    rgb, alpha = rgba[..., :3].astype(np.uint16), rgba[..., 3:].astype(np.uint16)
    return ((rgb * alpha + 127) // 255).astype(np.uint8)


def _gray16_to_rgb8(im: Image.Image, path: Path) -> np.ndarray:
    values = np.asarray(im)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise VideoReadError(
            f"image frame '{path}' holds values outside 0..65535 (mode {im.mode}); only "
            f"8- and 16-bit images are read")
    gray = (values.astype(np.uint16) >> 8).astype(np.uint8)
    key = im.info.get("transparency")
    if isinstance(key, int):   # a PNG's transparent gray level
        gray[values == key] = 0
    return np.repeat(gray[..., None], 3, axis=2)


def _image_to_rgb8(im: Image.Image, path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an opened image, by the rules in the module docstring."""
    if im.mode in _GRAY16_MODES:
        return _gray16_to_rgb8(im, path)
    if im.mode in _ALPHA_MODES or (im.mode in _OPAQUE_MODES and "transparency" in im.info):
        return _on_black(np.asarray(im.convert("RGBA")))
    if im.mode in _OPAQUE_MODES:
        return np.asarray(im.convert("RGB"))
    raise VideoReadError(
        f"image frame '{path}' has pixel mode {im.mode}, which is not read; save frames as "
        f"8- or 16-bit gray, RGB or palette images (alpha allowed)")


def _read_folder(folder: Path, fps: float | None, max_frames: int | None) -> Video:
    files = _frame_files(folder)[:max_frames]
    with _open_image(files[0]) as im:
        size = im.size
    _check_video_bytes(len(files), *size, folder)
    frames = []
    for p in files:
        with _open_image(p) as im:
            _check_same_size(im.size, size, f"frame '{p.name}'", folder)
            frames.append(_image_to_rgb8(im, p))
    return Video(folder.name, _stack(frames), fps or DEFAULT_FPS)


def _has_alpha(frame: av.VideoFrame) -> bool:
    return frame.format.has_palette or any(c.is_alpha for c in frame.format.components)


def _frame_to_rgb8(frame: av.VideoFrame) -> np.ndarray:
    if _has_alpha(frame):
        return _on_black(frame.to_ndarray(format="rgba"))
    return frame.to_ndarray(format="rgb24")


def _decode_stream(container: av.container.InputContainer, path: Path,
                   max_frames: int | None, timing: list[int],
                   first_frame: list[av.VideoFrame]) -> list[np.ndarray]:
    """The frames, appending each one's timestamp to ``timing`` and the first frame to
    ``first_frame``."""
    stream = container.streams.video[0]
    declared = (stream.codec_context.width, stream.codec_context.height)
    _check_frame_pixels(*declared, path)
    if stream.frames:
        _check_video_bytes(min(stream.frames, max_frames or stream.frames), *declared, path)
    frames: list[np.ndarray] = []
    first: tuple[int, int] | None = None
    for frame in container.decode(stream):
        size = (frame.width, frame.height)
        if frame.pts is not None:
            timing.append(frame.pts)
        if first is None:
            first = size
            first_frame.append(frame)
            _check_frame_pixels(*size, path)
        _check_same_size(size, first, f"frame {len(frames)}", path)
        _check_video_bytes(len(frames) + 1, *size, path)
        frames.append(_frame_to_rgb8(frame))
        if max_frames is not None and len(frames) >= max_frames:
            break
    return frames


def _read_file(path: Path, max_frames: int | None) -> Video:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"'{path}' has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            timing: list[int] = []
            first: list[av.VideoFrame] = []
            frames = _decode_stream(container, path, max_frames, timing, first)
            fps = float(rate) if rate else DEFAULT_FPS
            _timing_warnings(path, stream, first[0] if first else None, timing, fps)
    except av.FFmpegError as e:
        raise VideoReadError(f"cannot decode video '{path}': {e}") from e
    if not frames:
        raise VideoReadError(f"'{path}' holds no video frames")
    return Video(path.stem, _stack(frames), fps)


def _refuse_streams(p: Path) -> None:
    """Refuse a pipe, FIFO, socket or device at once: PyAV would wait for a writer without
    a word, and a video's size must be known before it is read."""
    mode = p.stat().st_mode
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return
    kind = "a pipe (FIFO)" if stat.S_ISFIFO(mode) else "not a regular file"
    raise VideoReadError(f"'{p}' is {kind}; videos are read from regular files or frame "
                         f"folders only: save the stream to a file first")


def _warn(message: str) -> None:
    warnings.warn(f"dnerv_fast: {message}", InputFidelityWarning, stacklevel=4)


class InputFidelityWarning(UserWarning):
    """A video is read with less than its file says (rotation, timing)."""


def _rotation(stream: av.video.stream.VideoStream, frame: av.VideoFrame | None) -> int:
    """Degrees of the display rotation a file asks for (0 where none is stored)."""
    for value in (getattr(frame, "rotation", None), stream.metadata.get("rotate")):
        try:
            degrees = round(float(value)) % 360 if value is not None else 0
        except (TypeError, ValueError):
            degrees = 0
        if degrees:
            return degrees
    return 0


def _timing_warnings(path: Path, stream, frame: av.VideoFrame | None, pts: list[int],
                     fps: float) -> None:
    """Warn where the frames read differ from what a player shows: a rotation that is not
    applied, or variable frame timing that becomes constant."""
    degrees = _rotation(stream, frame)
    if degrees:
        _warn(f"'{path}' asks players to rotate it by {degrees} degrees; frames are read as "
              f"stored (not rotated), so the decoded video is not rotated either")
    steps = sorted({b - a for a, b in zip(pts, pts[1:])})
    if len(steps) > 1 and steps[-1] > 1.5 * max(steps[0], 1):
        _warn(f"'{path}' has a variable frame rate (frame intervals from {steps[0]} to "
              f"{steps[-1]} time units); its timing becomes constant at {fps:g} fps")


def read_video(path: str | os.PathLike, max_frames: int | None = None,
               fps: float | None = None, options: SourceOptions | None = None) -> Video:
    """Read a video file (anything PyAV decodes), a raw ``.yuv`` or ``.y4m`` file
    (:mod:`.planar`, laid out and cropped by ``options``) or a folder of image frames.

    A folder's frames are its image files in natural order (:func:`natural_key`), converted
    to 8-bit RGB by the rules in the module docstring. ``max_frames`` keeps only the first
    frames; ``fps`` sets the rate of a frame folder (files keep their own rate). Raises
    ``VideoReadError`` for missing, unreadable, empty or too large input, unsupported pixel
    modes and frames of different sizes.
    """
    p = Path(path)
    if not p.exists():
        raise VideoReadError(f"video '{p}' does not exist")
    _refuse_streams(p)
    if max_frames is not None and max_frames < 1:
        raise VideoReadError(f"max_frames must be at least 1, got {max_frames}")
    if p.suffix.lower() in PLANAR_SUFFIXES and p.is_file():
        source = open_planar(p, options, max_frames)
        return Video(p.stem, rgb16_frames(source), source.fps, source)
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
