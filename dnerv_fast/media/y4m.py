"""YUV4MPEG2 (``.y4m``) streams: read frame by frame, and write, at 8 to 16 bits.

A Y4M stream is one text header line (``YUV4MPEG2 W.. H.. F.. C.. ...``), then per frame a
``FRAME`` line followed by the planes in the raw layout of :mod:`.yuv`. The colour space tag
``C`` gives chroma format and depth (``420jpeg``, ``420mpeg2``, ``420paldv``, ``422``,
``444``, ``mono``, ``420p10``, ``444p16``...); for 8-bit 4:2:0 it also names the chroma
siting (``jpeg``: centred, ``mpeg2``: left, ``paldv``: top-left), which is kept so that
output carries the tag it came with; sampling itself does not change with it (see
:mod:`.yuv`). ``XCOLORRANGE=FULL`` or ``LIMITED`` gives the range (absent: full, as the
module :mod:`.yuv` assumes). Without a ``C`` tag a stream is 8-bit 4:2:0 (``420jpeg``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from dnerv_fast.errors import VideoReadError, VideoWriteError
from dnerv_fast.media.yuv import (DEFAULT_RANGE, MAX_SIDE, YuvFormat, YuvLayout)

MAGIC = b"YUV4MPEG2"
MAX_HEADER = 4096
SITINGS = ("420jpeg", "420mpeg2", "420paldv")
_COLOURSPACES = {
    "420jpeg": ("420", 8), "420mpeg2": ("420", 8), "420paldv": ("420", 8), "420": ("420", 8),
    "422": ("422", 8), "444": ("444", 8), "mono": ("400", 8),
}
for _bits in (10, 12, 16):
    for _c in ("420", "422", "444"):
        _COLOURSPACES[f"{_c}p{_bits}"] = (_c, _bits)
    _COLOURSPACES[f"mono{_bits}"] = ("400", _bits)


@dataclass(frozen=True)
class Y4mInfo:
    """A stream's header: layout, colour range, the 4:2:0 siting tag (8-bit) and where the
    first frame starts."""

    layout: YuvLayout
    range: str = DEFAULT_RANGE
    siting: str | None = None
    data_start: int = 0


def _line(f: BinaryIO, limit: int, what: str, source: str) -> bytes:
    line = f.readline(limit + 1)
    if not line.endswith(b"\n"):
        if len(line) > limit:
            raise VideoReadError(f"'{source}': {what} is longer than {limit} bytes")
        raise VideoReadError(f"'{source}' is truncated inside {what}")
    return line[:-1]


def parse_header(line: bytes, source: str) -> Y4mInfo:
    """The stream description of a Y4M header line (without its newline)."""
    words = line.split(b" ")
    if words[0] != MAGIC:
        raise VideoReadError(f"'{source}' is not a Y4M stream (no YUV4MPEG2 header)")
    width = height = None
    rate, space, rng = Fraction(25), "420jpeg", DEFAULT_RANGE
    for word in words[1:]:
        if not word:
            continue
        tag, value = chr(word[0]), word[1:].decode("ascii", "replace")
        try:
            if tag == "W":
                width = int(value)
            elif tag == "H":
                height = int(value)
            elif tag == "F":
                num, den = value.split(":")
                rate = Fraction(int(num), int(den))
            elif tag == "C":
                space = value.lower()
            elif tag == "X" and value.upper().startswith("COLORRANGE="):
                rng = value.split("=", 1)[1].lower()
        except (ValueError, ZeroDivisionError) as e:
            raise VideoReadError(f"'{source}': bad Y4M header field '{tag}{value}'") from e
    if width is None or height is None or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise VideoReadError(f"'{source}': Y4M header needs W and H in 1..{MAX_SIDE}")
    if space not in _COLOURSPACES:
        raise VideoReadError(f"'{source}': unsupported Y4M colour space C{space} (read: "
                             f"{', '.join(sorted(_COLOURSPACES))})")
    if rng not in ("full", "limited"):
        raise VideoReadError(f"'{source}': XCOLORRANGE must be FULL or LIMITED, got {rng}")
    if not 0 < rate <= 1000:
        raise VideoReadError(f"'{source}': frame rate {rate} is outside (0, 1000]")
    chroma, bits = _COLOURSPACES[space]
    layout = YuvLayout(width, height, YuvFormat(chroma, bits), float(rate))
    return Y4mInfo(layout, rng, space if space in SITINGS else None)


class Y4mFile:
    """A Y4M file read one frame at a time; the frame count is found when opened by walking
    the ``FRAME`` lines (a truncated last frame is refused there)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        source = str(self.path)
        try:
            self._f = open(self.path, "rb")
            size = os.fstat(self._f.fileno()).st_size
        except OSError as e:
            raise VideoReadError(f"cannot read '{source}': {e.strerror or e}") from e
        head = parse_header(_line(self._f, MAX_HEADER, "the Y4M header", source), source)
        lay = head.layout
        self.frame_bytes = lay.format.frame_bytes(lay.width, lay.height)
        self.offsets: list[int] = []
        pos = self._f.tell()
        while pos < size:
            self._f.seek(pos)
            marker = _line(self._f, MAX_HEADER, f"frame {len(self.offsets)}'s FRAME line", source)
            if not marker.startswith(b"FRAME"):
                raise VideoReadError(f"'{source}': frame {len(self.offsets)} does not start "
                                     f"with FRAME")
            start = self._f.tell()
            if start + self.frame_bytes > size:
                raise VideoReadError(
                    f"'{source}' is truncated: frame {len(self.offsets)} needs "
                    f"{self.frame_bytes} bytes, {size - start} are left")
            self.offsets.append(start)
            pos = start + self.frame_bytes
        if not self.offsets:
            raise VideoReadError(f"'{source}' holds no frames")
        self.info = Y4mInfo(lay, head.range, head.siting, self.offsets[0])
        self.layout = lay

    def __len__(self) -> int:
        return len(self.offsets)

    def frame(self, index: int) -> list[np.ndarray]:
        fmt = self.layout.format
        self._f.seek(self.offsets[index])
        data = np.frombuffer(self._f.read(self.frame_bytes), dtype=fmt.dtype)
        planes, pos = [], 0
        for h, w in fmt.plane_shapes(self.layout.width, self.layout.height):
            planes.append(data[pos:pos + h * w].reshape(h, w).copy())
            pos += h * w
        if fmt.bit_depth not in (8, 16) and max(int(p.max()) for p in planes) > fmt.peak:
            raise VideoReadError(f"'{self.path}' frame {index} holds samples above {fmt.peak}, "
                                 f"the largest {fmt.bit_depth}-bit value")
        return planes

    def close(self) -> None:
        self._f.close()

    def __del__(self) -> None:
        f = getattr(self, "_f", None)
        if f is not None:
            f.close()


def colourspace(fmt: YuvFormat, siting: str | None = None) -> str:
    """The ``C`` tag value of a format (8-bit 4:2:0 with its siting, ``420jpeg`` by default)."""
    base = "mono" if fmt.chroma == "400" else fmt.chroma
    if fmt.bit_depth > 8:
        return f"{base}p{fmt.bit_depth}" if base != "mono" else f"mono{fmt.bit_depth}"
    if fmt.chroma == "420":
        return siting if siting in SITINGS else "420jpeg"
    return base


def header_line(layout: YuvLayout, rng: str = DEFAULT_RANGE, siting: str | None = None) -> bytes:
    rate = Fraction(layout.fps).limit_denominator(1001)
    return (f"YUV4MPEG2 W{layout.width} H{layout.height} F{rate.numerator}:{rate.denominator} "
            f"Ip A1:1 C{colourspace(layout.format, siting)} "
            f"XCOLORRANGE={rng.upper()}\n").encode()


class Y4mWriter:
    """Writes a Y4M stream to a binary file object, one frame's planes at a time."""

    def __init__(self, out: BinaryIO, layout: YuvLayout, rng: str = DEFAULT_RANGE,
                 siting: str | None = None) -> None:
        self.out, self.layout = out, layout
        self.shapes = layout.format.plane_shapes(layout.width, layout.height)
        out.write(header_line(layout, rng, siting))

    def write(self, planes: list[np.ndarray]) -> None:
        if [p.shape for p in planes] != self.shapes:
            raise VideoWriteError(f"frame planes {[p.shape for p in planes]} do not match the "
                                  f"stream's {self.shapes}")
        self.out.write(b"FRAME\n")
        for p in planes:
            self.out.write(np.ascontiguousarray(p, dtype=self.layout.format.dtype).tobytes())


def frames(path: str | os.PathLike) -> Iterator[list[np.ndarray]]:
    """Every frame's planes of a Y4M file, in order."""
    f = Y4mFile(path)
    try:
        for i in range(len(f)):
            yield f.frame(i)
    finally:
        f.close()
