"""Lossless coding of integer symbols with rANS (constriction) and a stored frequency table.

Stream layout (little-endian), self-contained so every bit of the model is counted:

    int32  lo            smallest symbol
    uint32 span          number of table entries (hi - lo + 1)
    uint16 freq[span]    frequencies, rescaled so the largest is 65535 (used symbols >= 1)
    uint32 words         number of 32-bit ANS words
    uint32 data[words]   constriction AnsCoder output (none when only one symbol occurs)

The decoder rebuilds the identical categorical model from the stored table, so the round
trip is exact. The count of symbols is not stored: the caller knows it (tensor shapes).
"""
from __future__ import annotations

import struct

import constriction
import numpy as np

from dnerv_fast.errors import BitstreamError

_HEAD = struct.Struct("<iI")
_WORDS = struct.Struct("<I")
FREQ_MAX = 65535


def _table(counts: np.ndarray) -> np.ndarray:
    """Rescale counts to uint16, keeping every used symbol at frequency >= 1."""
    scaled = np.ceil(counts.astype(np.float64) * FREQ_MAX / counts.max())
    return np.where(counts > 0, np.maximum(scaled, 1), 0).astype(np.uint16)


def _model(freq: np.ndarray) -> constriction.stream.model.Categorical:
    return constriction.stream.model.Categorical(freq.astype(np.float64), perfect=False)


def encode_symbols(symbols: np.ndarray) -> bytes:
    """Code a 1-D integer array; returns the self-contained stream."""
    symbols = np.asarray(symbols).reshape(-1).astype(np.int64)
    if symbols.size == 0:
        return _HEAD.pack(0, 0) + _WORDS.pack(0)
    lo, hi = int(symbols.min()), int(symbols.max())
    freq = _table(np.bincount(symbols - lo, minlength=hi - lo + 1))
    if freq.size == 1:   # a single repeated symbol carries no information
        return _HEAD.pack(lo, 1) + freq.astype("<u2").tobytes() + _WORDS.pack(0)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse((symbols - lo).astype(np.int32), _model(freq))
    data = coder.get_compressed().astype("<u4")
    return (_HEAD.pack(lo, freq.size) + freq.astype("<u2").tobytes()
            + _WORDS.pack(data.size) + data.tobytes())


def decode_symbols(stream: bytes, count: int) -> tuple[np.ndarray, int]:
    """Decode ``count`` symbols from the start of ``stream``; returns (symbols, bytes used)."""
    try:
        lo, span = _HEAD.unpack_from(stream, 0)
        pos = _HEAD.size
        freq = np.frombuffer(stream, "<u2", span, pos)
        pos += 2 * span
        (words,) = _WORDS.unpack_from(stream, pos)
        pos += _WORDS.size
        data = np.frombuffer(stream, "<u4", words, pos).astype(np.uint32)
        pos += 4 * words
    except (struct.error, ValueError) as e:
        raise BitstreamError(f"entropy-coded weights are truncated: {e}") from e
    if count == 0:
        return np.zeros(0, np.int64), pos
    if span == 0 or not freq.any():
        raise BitstreamError("entropy-coded weights have an empty frequency table")
    if span == 1:
        return np.full(count, lo, np.int64), pos
    coder = constriction.stream.stack.AnsCoder(data)
    symbols = coder.decode(_model(freq), count).astype(np.int64) + lo
    return symbols, pos


def empirical_entropy_bits(symbols: np.ndarray) -> float:
    """Total Shannon information of ``symbols`` under their own histogram, in bits."""
    _, counts = np.unique(np.asarray(symbols).reshape(-1), return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())
