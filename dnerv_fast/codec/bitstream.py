"""The .dnerv container: one versioned, checksummed file holding a whole encoded set of videos.

Layout (little-endian)::

    8 bytes   magic  b"DNERVF\\x1a\\n"
    uint16    format version (FORMAT_VERSION)
    uint16    number of sections n
    n x (4-byte tag, uint64 length)
    section payloads, in table order
    uint32    CRC32 of every byte before it

Sections: ``HEAD`` (UTF-8 JSON: model configuration, videos, codec settings), ``WGTS``
(quantised, entropy-coded weights, :mod:`.weights`), ``KEYF`` (keyframes: for each, a uint32
length then the codec's bytes, in header order). Every byte of the file is counted in bpp.
"""
from __future__ import annotations

import io
import json
import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dnerv_fast.atomic import write_bytes_atomic
from dnerv_fast.errors import BitstreamError

MAGIC = b"DNERVF\x1a\n"
FORMAT_VERSION = 3
# Version 3 added each video's source bit depth and chroma format to the header; a version 2
# file (no such fields: 8-bit RGB sources) decodes as before.
READ_VERSIONS = (2, 3)
SECTIONS = (b"HEAD", b"WGTS", b"KEYF")
_PRELUDE = struct.Struct("<8sHH")
_ENTRY = struct.Struct("<4sQ")
_CRC = struct.Struct("<I")
_LEN = struct.Struct("<I")
# A header is a few kB; a file is at most a few hundred MB for the paper's largest model.
MAX_HEADER_BYTES = 1 << 20
MAX_FILE_BYTES = 4 << 30


@dataclass
class Container:
    """Decoded contents of a .dnerv file."""

    header: dict[str, Any]
    weights: bytes
    keyframes: list[bytes] = field(default_factory=list)
    version: int = FORMAT_VERSION


def _pack_keyframes(keyframes: list[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(k)) + k for k in keyframes)


def _unpack_keyframes(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        if pos + _LEN.size > len(data):
            raise BitstreamError("keyframe section ends inside a length field")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + n > len(data):
            raise BitstreamError("keyframe section is shorter than its keyframe lengths say")
        out.append(data[pos:pos + n])
        pos += n
    return out


def _header_bytes(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()


def section_sizes(container: Container) -> dict[str, int]:
    """Bytes of the file by part: framing (magic, version, table, CRC), header, weights,
    keyframes (their length fields included); they add up to the size :func:`to_bytes` gives."""
    return {"framing": _PRELUDE.size + len(SECTIONS) * _ENTRY.size + _CRC.size,
            "header": len(_header_bytes(container.header)), "weights": len(container.weights),
            "keyframes": len(_pack_keyframes(container.keyframes))}


def to_bytes(container: Container) -> bytes:
    """Serialise a container (header JSON is written compactly, keys sorted)."""
    head = _header_bytes(container.header)
    payloads = [head, container.weights, _pack_keyframes(container.keyframes)]
    table = b"".join(_ENTRY.pack(tag, len(p)) for tag, p in zip(SECTIONS, payloads))
    body = _PRELUDE.pack(MAGIC, container.version, len(SECTIONS)) + table + b"".join(payloads)
    return body + _CRC.pack(zlib.crc32(body))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return out


def _parse_json(payload: bytes, source: str) -> dict[str, Any]:
    """The header object: strict JSON (no NaN or Infinity, no repeated keys), bounded size."""
    if len(payload) > MAX_HEADER_BYTES:
        raise BitstreamError(f"{source} has a {len(payload)}-byte header; the limit is "
                             f"{MAX_HEADER_BYTES}")
    try:
        header = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant,
                            object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as e:   # JSONDecodeError is a ValueError
        raise BitstreamError(f"{source} has an unreadable header: {e}") from e
    except RecursionError:
        raise BitstreamError(f"{source} has an unreadable header: nested too deeply") from None
    if not isinstance(header, dict):
        raise BitstreamError(f"{source} header is not a JSON object")
    return header


def _read(stream: BinaryIO, n: int, source: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise BitstreamError(f"{source} is truncated (it changed while it was read)")
    return data


def _parse(stream: BinaryIO, total: int, source: str) -> Container:
    """Read and verify a container of ``total`` bytes from ``stream``, section by section:
    every read is of a size the checks before it bounded by ``total``."""
    if total < len(MAGIC):
        if MAGIC.startswith(stream.read(total)):
            raise BitstreamError(f"{source} is truncated ({total} bytes)")
        raise BitstreamError(f"{source} is not a .dnerv file (wrong magic bytes)")
    magic = _read(stream, len(MAGIC), source)
    if magic != MAGIC:
        raise BitstreamError(f"{source} is not a .dnerv file (wrong magic bytes)")
    if total < _PRELUDE.size:
        raise BitstreamError(f"{source} is truncated ({total} bytes)")
    prelude = magic + _read(stream, _PRELUDE.size - len(MAGIC), source)
    _, version, count = _PRELUDE.unpack(prelude)
    if version not in READ_VERSIONS:
        older = (" (weights coded with one table, from a dnerv_fast before per-tensor coding: "
                 "encode the videos again)" if version < min(READ_VERSIONS) else "")
        raise BitstreamError(f"{source} has format version {version}{older}; this dnerv_fast "
                             f"reads versions {', '.join(map(str, READ_VERSIONS))}")
    table_end = _PRELUDE.size + count * _ENTRY.size
    if total < table_end + _CRC.size:
        raise BitstreamError(f"{source} is truncated (ends inside the section table)")
    table = _read(stream, count * _ENTRY.size, source)
    entries = [_ENTRY.unpack_from(table, i * _ENTRY.size) for i in range(count)]
    expected = table_end + sum(n for _, n in entries) + _CRC.size
    if total < expected:
        raise BitstreamError(f"{source} is truncated: {total} bytes, sections need {expected}")
    if total > expected:
        raise BitstreamError(f"{source} has inconsistent section lengths: {total - expected} "
                             f"bytes beyond the sections and checksum")
    crc = zlib.crc32(table, zlib.crc32(prelude))
    payloads = []
    for _, n in entries:
        payloads.append(_read(stream, n, source))
        crc = zlib.crc32(payloads[-1], crc)
    (stored,) = _CRC.unpack(_read(stream, _CRC.size, source))
    if crc != stored:
        raise BitstreamError(f"{source} is corrupted (checksum mismatch)")
    tags = [t for t, _ in entries]
    if tags != list(SECTIONS):
        raise BitstreamError(f"{source} has sections {tags}, expected {list(SECTIONS)}")
    header = _parse_json(payloads[0], source)
    return Container(header, payloads[1], _unpack_keyframes(payloads[2]), version)


def from_bytes(data: bytes, source: str = "file") -> Container:
    """Parse and verify a container; raises ``BitstreamError`` with the reason."""
    return _parse(io.BytesIO(data), len(data), source)


def write_container(path: str | os.PathLike, container: Container, overwrite: bool = False) -> int:
    """Write atomically; returns the file size in bytes."""
    data = to_bytes(container)
    write_bytes_atomic(path, data, overwrite)
    return len(data)


def read_container(path: str | os.PathLike) -> Container:
    """Read and verify a .dnerv file (a regular file of at most MAX_FILE_BYTES)."""
    p = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        with os.fdopen(os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise BitstreamError(f"'{p}' is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise BitstreamError(f"'{p}' is {info.st_size} bytes, more than a .dnerv file "
                                     f"may hold ({MAX_FILE_BYTES})")
            # Section by section, each read sized by the checks before it: never a buffer
            # of the largest size a file may have.
            return _parse(f, info.st_size, f"'{p}'")
    except OSError as e:
        raise BitstreamError(f"cannot read '{p}': {e.strerror or e}") from e


def bits_per_pixel(file_bytes: int, total_pixels: int) -> float:
    """8 * bytes / pixels, pixels counted at the original frame size over all videos."""
    if total_pixels <= 0:
        raise ValueError("total_pixels must be positive")
    return 8.0 * file_bytes / total_pixels
