"""Lossless coding of integer symbols with rANS (constriction) under stored frequency tables.

A :class:`Table` covers the symbols ``lo .. lo + span - 1`` with one byte per symbol: a
code of its frequency on a logarithmic scale (:data:`CODE_FREQ`; code 0: the symbol never
occurs). One byte a symbol keeps tables cheap enough that a tensor of a few thousand values
can afford its own; the codes' 3% steps cost well under 0.001 bits per symbol.

Stored table (little-endian)::

    int16  lo           smallest symbol
    uint16 span         number of codes (0: no table)
    uint8  code[span]   frequency code of symbol lo + k

Many sequences share one rANS stream, each under its own table (:func:`encode_stream`),
stored as a uint32 word count then the words. A table with a single used symbol codes
nothing: its sequence is that symbol repeated. Symbol counts are not stored: the caller
knows them (tensor shapes).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Sequence

import constriction
import numpy as np

from dnerv_fast.errors import BitstreamError

_TABLE_HEAD = struct.Struct("<hH")
_WORDS = struct.Struct("<I")
TABLE_HEAD_BYTES = _TABLE_HEAD.size
STREAM_HEAD_BYTES = _WORDS.size


def _code_freq() -> np.ndarray:
    """Frequency of each code: 0 for code 0, else a 4-bit-mantissa float,
    (16 + m) << e with m, e the low and high nibble of code - 1 (16 .. 983040)."""
    c = np.arange(255, dtype=np.int64)
    return np.concatenate([[0], (16 + (c & 15)) << (c >> 4)]).astype(np.int64)


CODE_FREQ = _code_freq()
_LOG_MIDPOINTS = (np.log(CODE_FREQ[1:-1]) + np.log(CODE_FREQ[2:])) / 2


@dataclass(frozen=True)
class Histogram:
    """Counts of the symbols ``lo .. lo + len(counts) - 1``."""

    lo: int
    counts: np.ndarray   # int64

    @classmethod
    def of(cls, symbols: np.ndarray) -> Histogram:
        symbols = np.asarray(symbols).reshape(-1).astype(np.int64)
        if symbols.size == 0:
            return cls(0, np.zeros(0, np.int64))
        lo = int(symbols.min())
        return cls(lo, np.bincount(symbols - lo))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def __add__(self, other: Histogram) -> Histogram:
        if not other.total:
            return self
        if not self.total:
            return other
        lo = min(self.lo, other.lo)
        hi = max(self.lo + self.counts.size, other.lo + other.counts.size)
        counts = np.zeros(hi - lo, np.int64)
        counts[self.lo - lo:self.lo - lo + self.counts.size] += self.counts
        counts[other.lo - lo:other.lo - lo + other.counts.size] += other.counts
        return Histogram(lo, counts)


@dataclass(frozen=True)
class Table:
    """A stored frequency table: one code (:data:`CODE_FREQ`) per symbol from ``lo``."""

    lo: int
    codes: np.ndarray    # uint8 [span]

    @property
    def freq(self) -> np.ndarray:
        return CODE_FREQ[self.codes]

    @property
    def used(self) -> int:
        """Symbols that may occur; with one, the stream holds nothing for them."""
        return int(np.count_nonzero(self.codes))

    @property
    def nbytes(self) -> int:
        return TABLE_HEAD_BYTES + int(self.codes.size)

    def least_bits(self) -> float:
        """The fewest bits any symbol costs under this table (its likeliest symbol's), less
        5% for the coder's fixed-point rounding: a bound no valid stream goes below."""
        freq = self.freq
        return 0.95 * float(-np.log2(freq.max() / freq.sum())) if self.used > 1 else 0.0

    def to_bytes(self) -> bytes:
        return _TABLE_HEAD.pack(self.lo, self.codes.size) + self.codes.astype(np.uint8).tobytes()

    def model(self) -> constriction.stream.model.Categorical:
        return constriction.stream.model.Categorical(self.freq.astype(np.float64), perfect=False)

    def information_bits(self, hist: Histogram) -> float:
        """Bits the coder spends on ``hist``'s symbols under this table (constriction's
        fixed-point rounding apart); infinite when one of them may not occur."""
        used = np.flatnonzero(hist.counts)
        if used.size == 0:
            return 0.0
        index = used + hist.lo - self.lo
        if index[0] < 0 or index[-1] >= self.codes.size:
            return math.inf
        freq = self.freq[index]
        if not freq.all():
            return math.inf
        if self.used == 1:
            return 0.0
        return float(-(hist.counts[used] * np.log2(freq / self.freq.sum())).sum())


ABSENT_TABLE = _TABLE_HEAD.pack(0, 0)   # where a table may be stored but none is


def fit_table(hist: Histogram) -> Table:
    """The table of ``hist``: its largest count at the top code, every occurring symbol at
    a code of at least 1, each code the nearest in log scale to the scaled count."""
    if not hist.total:
        raise ValueError("a table needs at least one symbol")
    used = np.flatnonzero(hist.counts)
    counts = hist.counts[used[0]:used[-1] + 1]
    scaled = np.log(np.maximum(counts, 1) * (CODE_FREQ[-1] / counts.max()))
    codes = 1 + np.searchsorted(_LOG_MIDPOINTS, scaled)
    return Table(hist.lo + int(used[0]), np.where(counts > 0, codes, 0).astype(np.uint8))


def read_table(data: bytes, pos: int, lo: int, hi: int, what: str) -> tuple[Table | None, int]:
    """The table stored at ``pos`` (None for span 0) and the position after it; its symbols
    must lie in ``lo .. hi``, checked before its codes are read."""
    if pos + TABLE_HEAD_BYTES > len(data):
        raise BitstreamError(f"weights section ends inside the {what}")
    first, span = _TABLE_HEAD.unpack_from(data, pos)
    pos += TABLE_HEAD_BYTES
    if span == 0:
        return None, pos
    if first < lo or first + span - 1 > hi:
        raise BitstreamError(f"the {what} covers symbols {first}..{first + span - 1}, outside "
                             f"{lo}..{hi}")
    if pos + span > len(data):
        raise BitstreamError(f"weights section ends inside the {what}")
    codes = np.frombuffer(data, np.uint8, span, pos).copy()
    if not codes.any():
        raise BitstreamError(f"the {what} gives every symbol frequency 0")
    return Table(first, codes), pos + span


def encode_stream(parts: Sequence[tuple[np.ndarray, Table]]) -> bytes:
    """One stream of every sequence under its table, decodable first to last."""
    coder = constriction.stream.stack.AnsCoder()
    for symbols, table in reversed(parts):   # a stack: the last pushed is the first read
        if table.used > 1 and symbols.size:
            coder.encode_reverse((symbols - table.lo).astype(np.int32), table.model())
    data = coder.get_compressed().astype("<u4")
    return _WORDS.pack(data.size) + data.tobytes()


def decode_stream(data: bytes, pos: int, parts: Sequence[tuple[Table, int]]
                  ) -> list[np.ndarray]:
    """Inverse of :func:`encode_stream` for the stream from ``pos`` to the end of ``data``:
    the sequences of ``count`` symbols each, under their tables."""
    if pos + STREAM_HEAD_BYTES > len(data):
        raise BitstreamError("weights section ends before its rANS stream")
    (words,) = _WORDS.unpack_from(data, pos)
    pos += STREAM_HEAD_BYTES
    if pos + 4 * words != len(data):
        raise BitstreamError(f"weights section's rANS stream declares {words} words; "
                             f"{len(data) - pos} bytes follow")
    least = sum(count * table.least_bits() for table, count in parts if table.used > 1)
    if 32 * words + 64 < least:
        raise BitstreamError(f"weights section's rANS stream has {words} words; its symbols "
                             f"need at least {math.ceil(least / 32)} (a stream too short to "
                             f"hold them is not decoded)")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4", words, pos)
                                                   .astype(np.uint32))
    except ValueError as e:
        raise BitstreamError(f"weights section's rANS stream is invalid: {e}") from e
    out = []
    for table, count in parts:
        if table.used > 1 and count:
            out.append(coder.decode(table.model(), count).astype(np.int64) + table.lo)
        else:
            out.append(np.full(count, table.lo + int(np.flatnonzero(table.codes)[0]), np.int64))
    if not coder.is_empty():
        raise BitstreamError("weights section's rANS stream holds more than its symbols")
    return out


def empirical_entropy_bits(symbols: np.ndarray) -> float:
    """Total Shannon information of ``symbols`` under their own histogram, in bits."""
    _, counts = np.unique(np.asarray(symbols).reshape(-1), return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())
