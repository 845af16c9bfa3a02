"""Intra (still image) codecs for keyframes, chosen by name.

Each codec turns one uint8 RGB frame [H, W, 3] into bytes and back. The bytes are exactly
what the container stores, so keyframe bits are counted from real data, and the decoded
frame is what the network is trained on and decodes with.

Quality settings (codec-specific, as users of each codec know them):

- ``webp``, ``jpeg``: Pillow quality 1..100, higher is better (4:2:0 chroma).
- ``png``: lossless; quality is ignored (use it to study the network alone).
- ``hevc``: libx265 CRF 0..51, lower is better (one intra frame, yuv420p).
- ``av1``: libsvtav1 CRF 1..63, lower is better (one intra frame, yuv420p, decoded by dav1d).

The video codecs need even sizes for 4:2:0: odd frames are padded by repeating the last
row/column and cropped back after decoding.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from dnerv_fast.errors import KeyframeCodecError

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder otherwise


@dataclass(frozen=True)
class KeyframeCodec:
    """A named intra codec with the valid range of its quality setting."""

    name: str
    quality_range: tuple[int, int]
    default_quality: int
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes], np.ndarray]


def _pil_encode(fmt: str, **extra) -> Callable[[np.ndarray, int], bytes]:
    def encode(frame: np.ndarray, quality: int) -> bytes:
        buf = io.BytesIO()
        options = dict(extra) if fmt == "PNG" else dict(extra, quality=quality)
        Image.fromarray(frame).save(buf, format=fmt, **options)
        return buf.getvalue()
    return encode


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).copy()


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w, _ = frame.shape
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _av_encode(encoder: str, options: Callable[[int], dict[str, str]]
               ) -> Callable[[np.ndarray, int], bytes]:
    def encode(frame: np.ndarray, quality: int) -> bytes:
        padded = _pad_even(frame)
        ctx = av.CodecContext.create(encoder, "w")
        ctx.height, ctx.width = padded.shape[:2]
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.options = options(quality)
        picture = av.VideoFrame.from_ndarray(padded, format="rgb24").reformat(format="yuv420p")
        packets = list(ctx.encode(picture)) + list(ctx.encode(None))
        return b"".join(bytes(p) for p in packets)
    return encode


def _av_decode(decoder: str) -> Callable[[bytes], np.ndarray]:
    def decode(data: bytes) -> np.ndarray:
        ctx = av.CodecContext.create(decoder, "r")
        frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
        if len(frames) != 1:
            raise KeyframeCodecError(f"{decoder} keyframe decoded to {len(frames)} frames, not 1")
        return frames[0].to_ndarray(format="rgb24")
    return decode


CODECS: dict[str, KeyframeCodec] = {
    "webp": KeyframeCodec("webp", (1, 100), 85, _pil_encode("WEBP", method=6), _pil_decode),
    "jpeg": KeyframeCodec("jpeg", (1, 100), 90, _pil_encode("JPEG", optimize=True), _pil_decode),
    "png": KeyframeCodec("png", (0, 100), 0, _pil_encode("PNG", optimize=True), _pil_decode),
    "hevc": KeyframeCodec(
        "hevc", (0, 51), 28,
        _av_encode("libx265", lambda q: {"crf": str(q), "preset": "medium",
                                         "x265-params": "log-level=error"}),
        _av_decode("hevc")),
    "av1": KeyframeCodec(
        "av1", (1, 63), 35,
        _av_encode("libsvtav1", lambda q: {"crf": str(q), "preset": "6"}),
        _av_decode("libdav1d")),
}


def get_codec(name: str, quality: int | None = None) -> tuple[KeyframeCodec, int]:
    """Look up a codec by name and validate ``quality`` (None: the codec's default)."""
    codec = CODECS.get(name.lower())
    if codec is None:
        raise KeyframeCodecError(
            f"unknown keyframe codec '{name}'; choose one of: {', '.join(CODECS)}")
    q = codec.default_quality if quality is None else int(quality)
    lo, hi = codec.quality_range
    if not lo <= q <= hi:
        raise KeyframeCodecError(f"{codec.name} quality must be in {lo}..{hi}, got {q}")
    return codec, q


def encode_keyframe(frame: np.ndarray, name: str, quality: int | None = None
                    ) -> tuple[bytes, np.ndarray]:
    """Code one uint8 RGB frame [H, W, 3]; return (stored bytes, decoded frame)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise KeyframeCodecError(f"keyframes must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    codec, q = get_codec(name, quality)
    data = codec.encode(np.ascontiguousarray(frame), q)
    return data, decode_keyframe(data, codec.name, frame.shape[:2])


def decode_keyframe(data: bytes, name: str, size: tuple[int, int]) -> np.ndarray:
    """Decode stored keyframe bytes to uint8 RGB [H, W, 3] of ``size`` (height, width)."""
    codec, _ = get_codec(name, None)
    try:
        frame = codec.decode(data)
    except (av.FFmpegError, UnidentifiedImageError, OSError, ValueError) as e:
        raise KeyframeCodecError(f"{codec.name} keyframe does not decode: {e}") from e
    h, w = size
    if frame.shape[0] < h or frame.shape[1] < w:
        raise KeyframeCodecError(
            f"{codec.name} keyframe decoded to {frame.shape[1]}x{frame.shape[0]}, expected {w}x{h}")
    return np.ascontiguousarray(frame[:h, :w])
