"""Intra (still image) codecs for keyframes, chosen by name.

Each codec turns one uint8 RGB frame [H, W, 3] into bytes and back. The bytes are exactly
what the container stores, so keyframe bits are counted from real data, and the decoded
frame is what the network is trained on and decodes with.

Quality settings (codec-specific, as users of each codec know them):

- ``webp``, ``jpeg``: Pillow quality 1..100, higher is better (4:2:0 chroma).
- ``png``: lossless; quality is ignored (use it to study the network alone).
- ``hevc``: libx265 CRF 0..51, lower is better (one intra frame, yuv420p, tuned for PSNR).
- ``av1``: libsvtav1 CRF 1..63, lower is better (one intra frame, yuv420p, decoded by dav1d).

The video codecs need even sizes for 4:2:0: odd frames are padded by repeating the last
row/column and cropped back after decoding. SVT-AV1 also gets frames of at least 64 pixels a
side, padded the same way: libsvtav1 (the one in PyAV's wheels) never returns from flushing a
picture with a side below 32 or so and the other side longer (16x96, 24x128, 128x24 hang;
16x64 does not), a hang that no error reports.

Keyframe bytes come from files other people made, so decoding trusts nothing in them: a
keyframe must be the size the caller expects (or that size padded to even), checked before
any pixel is decoded: Pillow codecs read the declared size from the image header, and the
video decoders are given the expected pixel count as their limit (``max_pixels``), so a
decompression bomb is refused unallocated. Broken data of any kind ends in a
``KeyframeCodecError``.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import av
import numpy as np
from PIL import Image

from dnerv_fast.errors import KeyframeCodecError
from dnerv_fast.media.images import PIL_DATA_ERRORS, open_image

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per encoder otherwise

@dataclass(frozen=True)
class KeyframeCodec:
    """A named intra codec with the valid range of its quality setting."""

    name: str
    quality_range: tuple[int, int]
    default_quality: int
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes, tuple[int, int]], np.ndarray]   # (data, (height, width))


def _pil_encode(fmt: str, **extra) -> Callable[[np.ndarray, int], bytes]:
    def encode(frame: np.ndarray, quality: int) -> bytes:
        buf = io.BytesIO()
        options = dict(extra) if fmt == "PNG" else dict(extra, quality=quality)
        Image.fromarray(frame).save(buf, format=fmt, **options)
        return buf.getvalue()
    return encode


def _padded_size(size: tuple[int, int], min_side: int = 1) -> tuple[int, int]:
    h, w = size
    return max(h + h % 2, min_side), max(w + w % 2, min_side)


def _check_size(name: str, got: tuple[int, int], size: tuple[int, int],
                min_side: int = 1) -> None:
    """Refuse a keyframe of (height, width) ``got`` unless it is ``size``, padded or not."""
    (h, w), (ph, pw) = size, _padded_size(size, min_side)
    if not (h <= got[0] <= ph and w <= got[1] <= pw):
        raise KeyframeCodecError(
            f"{name} keyframe is {got[1]}x{got[0]}, expected {w}x{h}")


def _pil_decode(name: str, fmt: str) -> Callable[[bytes, tuple[int, int]], np.ndarray]:
    def decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
        # The size is checked here, against the caller's.
        with open_image(io.BytesIO(data), [fmt], f"{name} keyframe") as im:
            _check_size(name, im.size[::-1], size)
            if im.mode != "RGB":
                raise KeyframeCodecError(f"{name} keyframe has pixel mode {im.mode}, not RGB")
            return np.array(im)
    return decode


def _pad(frame: np.ndarray, min_side: int) -> np.ndarray:
    """``frame`` padded to :func:`_padded_size` by repeating its last row and column."""
    h, w, _ = frame.shape
    ph, pw = _padded_size((h, w), min_side)
    return np.pad(frame, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")


def _av_encode(encoder: str, options: Callable[[int], dict[str, str]], min_side: int = 1
               ) -> Callable[[np.ndarray, int], bytes]:
    def encode(frame: np.ndarray, quality: int) -> bytes:
        padded = _pad(frame, min_side)
        ctx = av.CodecContext.create(encoder, "w")
        ctx.height, ctx.width = padded.shape[:2]
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.options = options(quality)
        picture = av.VideoFrame.from_ndarray(padded, format="rgb24").reformat(format="yuv420p")
        packets = list(ctx.encode(picture)) + list(ctx.encode(None))
        return b"".join(bytes(p) for p in packets)
    return encode


def _pixel_limit(size: tuple[int, int], min_side: int) -> int:
    """A video decoder's ``max_pixels`` for ``size``: FFmpeg refuses larger pictures before
    allocating them, but counts its buffers' width aligned for SIMD (up to 64), so the limit
    allows that; the exact size is checked after decoding."""
    ph, pw = _padded_size(size, min_side)
    return (pw + 63) // 64 * 64 * ph


def _av_decode(name: str, decoder: str, min_side: int = 1
               ) -> Callable[[bytes, tuple[int, int]], np.ndarray]:
    def decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
        ctx = av.CodecContext.create(decoder, "r")
        ctx.options = {"max_pixels": str(_pixel_limit(size, min_side))}
        # One picture gains little from threads, and libdav1d's threads can hang when the
        # context is closed after broken data.
        ctx.thread_count = 1
        frames = list(ctx.decode(av.Packet(data))) + list(ctx.decode(None))
        if len(frames) != 1:
            raise KeyframeCodecError(f"{name} keyframe decoded to {len(frames)} frames, not 1")
        _check_size(name, (frames[0].height, frames[0].width), size, min_side)
        return frames[0].to_ndarray(format="rgb24")
    return decode


AV1_MIN_SIDE = 64  # see the module docstring
# The default: the fewest bytes at equal PSNR on real frames, with HEVC (benches/keyframe_codecs.py:
# BD-rate against WebP -17% carphone, -3% bikes, -19% vtest; HEVC -19%, -2%, -19%), and
# faster to decode and free of a minimum frame size.
DEFAULT_CODEC = "av1"

CODECS: dict[str, KeyframeCodec] = {
    "webp": KeyframeCodec("webp", (1, 100), 85, _pil_encode("WEBP", method=6),
                          _pil_decode("webp", "WEBP")),
    "jpeg": KeyframeCodec("jpeg", (1, 100), 90, _pil_encode("JPEG", optimize=True),
                          _pil_decode("jpeg", "JPEG")),
    "png": KeyframeCodec("png", (0, 100), 0, _pil_encode("PNG", optimize=True),
                         _pil_decode("png", "PNG")),
    "hevc": KeyframeCodec(
        "hevc", (0, 51), 28,
        # info=0: no x265 version/settings SEI, 2.3 kB of text in every keyframe otherwise.
        _av_encode("libx265", lambda q: {"crf": str(q), "preset": "medium", "tune": "psnr",
                                         "x265-params": "log-level=error:info=0"}),
        _av_decode("hevc", "hevc")),
    "av1": KeyframeCodec(
        "av1", (1, 63), 25,      # ~WebP 85's PSNR (36-37 dB on carphone), 15-20% fewer bytes
        _av_encode("libsvtav1", lambda q: {"crf": str(q), "preset": "6"}, AV1_MIN_SIDE),
        _av_decode("av1", "libdav1d", AV1_MIN_SIDE)),
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


def code_keyframe(frame: np.ndarray, name: str, quality: int | None = None) -> bytes:
    """The stored bytes of one uint8 RGB frame [H, W, 3] (not decoded back: an encoder
    decodes only the keyframes it keeps, once)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise KeyframeCodecError(f"keyframes must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    codec, q = get_codec(name, quality)
    try:
        data = codec.encode(np.ascontiguousarray(frame), q)
    except (av.FFmpegError, OSError, ValueError) as e:   # x265 and SVT-AV1 refuse tiny frames
        h, w = frame.shape[:2]
        raise KeyframeCodecError(f"{codec.name} cannot code a {w}x{h} keyframe: {e}; use another "
                                 f"keyframe_codec= (webp, png) for frames this small") from e
    return data


def encode_keyframe(frame: np.ndarray, name: str, quality: int | None = None
                    ) -> tuple[bytes, np.ndarray]:
    """Code one uint8 RGB frame [H, W, 3]; return (stored bytes, decoded frame)."""
    data = code_keyframe(frame, name, quality)
    return data, decode_keyframe(data, name, frame.shape[:2])


def decode_keyframe(data: bytes, name: str, size: tuple[int, int]) -> np.ndarray:
    """Decode stored keyframe bytes to uint8 RGB [H, W, 3] of ``size`` (height, width).

    Raises ``KeyframeCodecError`` for bytes that do not decode, or decode to another size
    (see the module docstring), before allocating more than that size needs.
    """
    codec, _ = get_codec(name, None)
    h, w = size
    try:
        frame = codec.decode(data, size)
    except (av.FFmpegError, *PIL_DATA_ERRORS) as e:
        raise KeyframeCodecError(
            f"{codec.name} keyframe does not decode as a {w}x{h} frame: {e}") from e
    return np.ascontiguousarray(frame[:h, :w])
