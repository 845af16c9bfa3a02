"""Classical codec anchors: x264 and x265 through PyAV on the same frames.

Anchors are encoded in **yuv444p** by default (High 4:4:4 / Main 4:4:4 profiles) so that RGB
PSNR is not capped by chroma subsampling (RGB -> yuv420p -> RGB alone stops near 45 dB);
``yuv420p``, what people usually ship, is there to compare with too. Bits are the sum of the
encoded packet sizes (raw bitstream, no container overhead) less the SEI NAL units, which
carry no picture: x264 writes its version and every setting as text into the first frame
(about 0.7 kB), x265 likewise unless told ``info=0`` (about 2.3 kB); on a small clip at a
low rate that alone is several percent of the file. The decoder is fed the stripped packets,
so what is counted is what decodes.

A YUV source (raw .yuv or .y4m) is coded from its own planes in its own layout instead
(:func:`encode_anchor_planes`: yuv420p10le stays 4:2:0 at 10 bits), and measured on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from dnerv_fast.errors import CodecError
from dnerv_fast.media.yuv import SUBSAMPLING, YuvFormat

ENCODERS = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc")}
PIX_FMTS = ("yuv444p", "yuv420p")
_START = b"\x00\x00\x01"


def _is_sei(nal: bytes, anchor: str) -> bool:
    if not nal:
        return False
    if anchor == "x264":
        return nal[0] & 0x1F == 6                  # H.264 SEI
    return (nal[0] >> 1) & 0x3F in (39, 40)        # HEVC prefix / suffix SEI


def without_sei(data: bytes, anchor: str) -> bytes:
    """An Annex B packet without its SEI NAL units (start codes kept for the rest)."""
    parts = data.split(_START)
    kept = [parts[0].rstrip(b"\x00")] if parts[0].strip(b"\x00") else []
    for nal in parts[1:]:
        body = nal.rstrip(b"\x00")      # a trailing zero belongs to the next 4-byte start code
        if not _is_sei(body, anchor):
            kept.append(_START + body)
    return b"".join(kept)


def _frame_of(planes: list[np.ndarray], pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """An FFmpeg frame holding ``planes`` (each row copied into the frame's padded lines)."""
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, data in zip(frame.planes, planes):
        rows = np.zeros((plane.height, plane.line_size // data.dtype.itemsize), data.dtype)
        rows[:data.shape[0], :data.shape[1]] = data
        plane.update(rows.tobytes())
    return frame


def _planes_of(frame: av.VideoFrame, fmt: YuvFormat, width: int, height: int
               ) -> list[np.ndarray]:
    out = []
    for plane, (h, w) in zip(frame.planes, fmt.plane_shapes(width, height)):
        rows = np.frombuffer(bytes(plane), fmt.dtype).reshape(
            plane.height, plane.line_size // fmt.dtype.itemsize)
        out.append(rows[:h, :w].copy())
    return out


def _pad_luma(planes: list[np.ndarray], fmt: YuvFormat) -> list[np.ndarray]:
    """Subsampled formats need even sides: an odd luma side gains a repeated edge (the
    chroma planes already cover it)."""
    sx, sy = SUBSAMPLING[fmt.chroma]
    h, w = planes[0].shape
    pad = ((0, h % sy), (0, w % sx))
    return [np.pad(planes[0], pad, mode="edge"), *planes[1:]] if any(p for _, p in pad) else planes


@dataclass
class PlanesResult:
    """Decoded frames as planes in the source's layout, and the bytes the bitstream took."""

    planes: list[list[np.ndarray]]
    bytes: int


def encode_anchor_planes(frames: list[list[np.ndarray]], fmt: YuvFormat, anchor: str, crf: int,
                         fps: float = 25.0, preset: str = "medium") -> PlanesResult:
    """Encode and decode YUV planes with ``anchor`` in their own layout (``fmt``: chroma
    format and bit depth, e.g. yuv420p10le), so that a YUV source is coded as it is."""
    if anchor not in ENCODERS:
        raise CodecError(f"unknown anchor '{anchor}'; choose from {', '.join(ENCODERS)}")
    h, w = frames[0][0].shape
    padded = [_pad_luma(p, fmt) for p in frames]
    ph, pw = padded[0][0].shape
    packets = []
    try:
        enc = av.CodecContext.create(ENCODERS[anchor][0], "w")
        enc.height, enc.width, enc.pix_fmt = ph, pw, fmt.pix_fmt
        rate = Fraction(fps).limit_denominator(1001)
        enc.time_base, enc.framerate = 1 / rate, rate
        enc.options = _options(anchor, crf, preset)
        for i, planes in enumerate(padded):
            picture = _frame_of(planes, fmt.pix_fmt, pw, ph)
            picture.pts = i
            packets += enc.encode(picture)
        packets += enc.encode(None)
    except (av.FFmpegError, ValueError) as e:
        raise CodecError(f"{anchor} cannot encode {fmt.pix_fmt}: {e}") from e
    out, total = _decode_counted(packets, anchor, ENCODERS[anchor][1], len(frames))
    return PlanesResult([_planes_of(f, fmt, w, h) for f in out], total)


@dataclass
class AnchorResult:
    """Decoded frames uint8 [N, H, W, 3] and the bytes the bitstream took."""

    frames: np.ndarray
    bytes: int


def _options(anchor: str, crf: int, preset: str) -> dict[str, str]:
    opts = {"crf": str(crf), "preset": preset}
    if anchor == "x265":
        opts["x265-params"] = "log-level=error:info=0"
    return opts


def encode_anchor(frames: np.ndarray, anchor: str, crf: int, fps: float = 25.0,
                  preset: str = "medium", pix_fmt: str = "yuv444p") -> AnchorResult:
    """Encode and decode ``frames`` with ``anchor`` ('x264' or 'x265') at ``crf``."""
    if anchor not in ENCODERS:
        raise CodecError(f"unknown anchor '{anchor}'; choose from {', '.join(ENCODERS)}")
    if pix_fmt not in PIX_FMTS:
        raise CodecError(f"unknown anchor pixel format '{pix_fmt}'; choose from "
                         f"{', '.join(PIX_FMTS)}")
    encoder, decoder = ENCODERS[anchor]
    n, h, w, _ = frames.shape
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    padded = np.pad(frames, pad, mode="edge") if (h % 2 or w % 2) else frames
    enc = av.CodecContext.create(encoder, "w")
    enc.height, enc.width = padded.shape[1:3]
    enc.pix_fmt = pix_fmt
    rate = Fraction(fps).limit_denominator(1001)
    enc.time_base, enc.framerate = 1 / rate, rate
    enc.options = _options(anchor, crf, preset)
    packets = []
    for i, f in enumerate(padded):
        picture = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=pix_fmt)
        picture.pts = i
        packets += enc.encode(picture)
    packets += enc.encode(None)
    out, total = _decode_counted(packets, anchor, decoder, n)
    decoded = np.stack([f.to_ndarray(format="rgb24")[:h, :w] for f in out])
    return AnchorResult(decoded, total)


def _decode_counted(packets: list, anchor: str, decoder: str, n: int) -> tuple[list, int]:
    """Decode an anchor's packets, counting only the bytes a decoder needs (SEI removed):
    (frames, bytes)."""
    dec = av.CodecContext.create(decoder, "r")
    out, total = [], 0
    for p in packets:
        stripped = av.Packet(without_sei(bytes(p), anchor))
        stripped.pts, stripped.dts = p.pts, p.dts
        total += stripped.size
        out += dec.decode(stripped)
    out += dec.decode(None)
    if len(out) != n:
        raise CodecError(f"{anchor} decoded {len(out)} frames, expected {n}")
    return out, total
