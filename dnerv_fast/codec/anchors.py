"""Classical codec anchors: x264 and x265 through PyAV on the same frames.

Anchors are encoded in **yuv444p** (High 4:4:4 / Main 4:4:4 profiles) so that RGB PSNR is not
capped by chroma subsampling (RGB -> yuv420p -> RGB alone stops near 45 dB). Bits are the
sum of the encoded packet sizes (raw bitstream, no container overhead).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from dnerv_fast.errors import CodecError

ENCODERS = {"x264": ("libx264", "h264"), "x265": ("libx265", "hevc")}


@dataclass
class AnchorResult:
    """Decoded frames uint8 [N, H, W, 3] and the bytes the bitstream took."""

    frames: np.ndarray
    bytes: int


def _options(anchor: str, crf: int, preset: str) -> dict[str, str]:
    opts = {"crf": str(crf), "preset": preset}
    if anchor == "x265":
        opts["x265-params"] = "log-level=error"
    return opts


def encode_anchor(frames: np.ndarray, anchor: str, crf: int, fps: float = 25.0,
                  preset: str = "medium") -> AnchorResult:
    """Encode and decode ``frames`` with ``anchor`` ('x264' or 'x265') at ``crf``."""
    if anchor not in ENCODERS:
        raise CodecError(f"unknown anchor '{anchor}'; choose from {', '.join(ENCODERS)}")
    encoder, decoder = ENCODERS[anchor]
    n, h, w, _ = frames.shape
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    padded = np.pad(frames, pad, mode="edge") if (h % 2 or w % 2) else frames
    enc = av.CodecContext.create(encoder, "w")
    enc.height, enc.width = padded.shape[1:3]
    enc.pix_fmt = "yuv444p"
    rate = Fraction(fps).limit_denominator(1001)
    enc.time_base, enc.framerate = 1 / rate, rate
    enc.options = _options(anchor, crf, preset)
    packets = []
    for i, f in enumerate(padded):
        picture = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv444p")
        picture.pts = i
        packets += enc.encode(picture)
    packets += enc.encode(None)
    dec = av.CodecContext.create(decoder, "r")
    out = []
    for p in packets:
        out += dec.decode(p)
    out += dec.decode(None)
    if len(out) != n:
        raise CodecError(f"{anchor} decoded {len(out)} frames, expected {n}")
    decoded = np.stack([f.to_ndarray(format="rgb24")[:h, :w] for f in out])
    return AnchorResult(decoded, sum(p.size for p in packets))
