"""What an encode really gave: the file's bpp, its PSNR after quantisation on the real frames,
its size against raw RGB and against an x264 file of the same PSNR, and the weights' bits
per parameter.

The training bar shows PSNR on training patches before quantisation; these figures are of
the written file, decoded as the decoder will decode it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from dnerv_fast.codec.anchors import encode_anchor
from dnerv_fast.codec.weight_report import WeightsSummary
from dnerv_fast.errors import CodecError

X264_CRFS = (0, 51)


@dataclass(frozen=True)
class AnchorPoint:
    """One real x264 file: its CRF, mean PSNR and bytes (all videos together)."""

    crf: int
    psnr: float
    bytes: int


@dataclass(frozen=True)
class EncodeSummary:
    """Measured figures of a written file."""

    file_bytes: int
    pixels: int
    psnr: float
    anchors: tuple[AnchorPoint, ...]     # bracketing x264 points, best first; () if none
    weights: WeightsSummary | None = None

    @property
    def bpp(self) -> float:
        return 8 * self.file_bytes / self.pixels

    @property
    def raw_bytes(self) -> int:
        return 3 * self.pixels

    def x264_bytes(self) -> float | None:
        """x264 bytes at this PSNR: log-linear between the two bracketing real files."""
        if len(self.anchors) != 2:
            return float(self.anchors[0].bytes) if self.anchors else None
        a, b = self.anchors
        if a.psnr == b.psnr:
            return float(a.bytes)
        w = (self.psnr - b.psnr) / (a.psnr - b.psnr)
        return math.exp(math.log(b.bytes) + w * (math.log(a.bytes) - math.log(b.bytes)))

    def lines(self) -> list[str]:
        out = [f"file: {self.file_bytes:,} bytes = {self.bpp:.4f} bpp; PSNR {self.psnr:.2f} dB "
               f"(RGB, after quantisation, on the real frames); raw RGB is {self.raw_bytes:,} "
               f"bytes, the file is {self.file_bytes / self.raw_bytes:.2%} of it"]
        x264 = self.x264_bytes()
        if len(self.anchors) == 1:
            p = self.anchors[0]
            side = "lowest" if p.psnr >= self.psnr else "highest"
            out.append(f"x264 (medium, yuv444p) at its {side} rate (CRF {p.crf}) gives {p.psnr:.2f} dB "
                       f"in {p.bytes:,} bytes ({8 * p.bytes / self.pixels:.4f} bpp); this file "
                       f"is {self.file_bytes / p.bytes:.2f}x that")
        elif x264 is not None:
            pts = ", ".join(f"CRF {p.crf}: {p.psnr:.2f} dB {p.bytes:,} B" for p in self.anchors)
            out.append(f"x264 (medium, yuv444p) at the same PSNR: ~{x264:,.0f} bytes "
                       f"({8 * x264 / self.pixels:.4f} bpp; real files {pts}); this file is "
                       f"{self.file_bytes / x264:.2f}x that")
        if self.weights is not None:
            out.append(self.weights.line())
        return out


def mean_psnr(decoded: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Per-frame RGB PSNR (uint8 [N, H, W, 3] pairs), averaged over every frame."""
    values = []
    for d, r in zip(decoded, reference):
        err = (d.astype(np.float64) - r.astype(np.float64)) / 255.0
        mse = (err ** 2).reshape(len(err), -1).mean(axis=1)
        values.append(np.where(mse > 0, -10 * np.log10(np.maximum(mse, 1e-20)), 100.0))
    return float(np.concatenate(values).mean())


def x264_bracket(reference: Sequence[np.ndarray], fps: Sequence[float], psnr: float,
                 encode: Callable[[np.ndarray, int, float], tuple[np.ndarray, int]]
                 ) -> tuple[AnchorPoint, ...]:
    """The two integer x264 CRFs whose files bracket ``psnr`` (bisection; PSNR falls with
    CRF), or the one end of the CRF range when ``psnr`` is outside what x264 reaches.
    ``encode(frames, crf, fps)`` returns (decoded frames, bytes)."""
    cache: dict[int, AnchorPoint] = {}

    def point(crf: int) -> AnchorPoint:
        if crf not in cache:
            runs = [encode(f, crf, r) for f, r in zip(reference, fps)]
            cache[crf] = AnchorPoint(crf, mean_psnr([d for d, _ in runs], reference),
                                     sum(b for _, b in runs))
        return cache[crf]

    lo, hi = X264_CRFS
    if point(hi).psnr >= psnr:
        return (point(hi),)
    if point(lo).psnr <= psnr:
        return (point(lo),)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if point(mid).psnr >= psnr:
            lo = mid
        else:
            hi = mid
    return point(lo), point(hi)


def measure(decoded: Sequence[np.ndarray], reference: Sequence[np.ndarray],
            fps: Sequence[float], file_bytes: int, anchors: bool = True,
            weights: WeightsSummary | None = None) -> EncodeSummary:
    """The :class:`EncodeSummary` of a file whose videos decode to ``decoded`` and whose weights
    section ``weights`` describes."""
    pixels = sum(int(np.prod(r.shape[:3])) for r in reference)
    psnr = mean_psnr(decoded, reference)
    points: tuple[AnchorPoint, ...] = ()
    if anchors:
        def x264(frames: np.ndarray, crf: int, rate: float) -> tuple[np.ndarray, int]:
            result = encode_anchor(frames, "x264", crf, fps=rate)
            return result.frames, result.bytes
        try:
            points = x264_bracket(reference, fps, psnr, x264)
        except CodecError:       # the file is written: a failing anchor only loses its line
            points = ()
    return EncodeSummary(file_bytes, pixels, psnr, points, weights)
