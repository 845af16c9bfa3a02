"""The .dnerv container: round trip, and a clear error for every kind of damage."""
import struct
import zlib

import pytest

from dnerv_fast.codec.bitstream import (MAGIC, Container, bits_per_pixel, from_bytes,
                                        read_container, to_bytes, write_container)
from dnerv_fast.errors import BitstreamError, OutputExistsError


@pytest.fixture
def container():
    return Container({"config": {"fc_dim": 16}, "videos": [{"name": "a", "frames": 9}]},
                     bytes(range(200)), [b"key-one", b"", b"key-three" * 10])


def test_round_trip(tmp_path, container):
    path = tmp_path / "x.dnerv"
    size = write_container(path, container)
    assert size == path.stat().st_size
    back = read_container(path)
    assert back == container
    assert [p.name for p in tmp_path.iterdir()] == ["x.dnerv"]


def test_existing_file_not_replaced(tmp_path, container):
    path = tmp_path / "x.dnerv"
    path.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        write_container(path, container)
    assert path.read_bytes() == b"old"


def test_wrong_magic(container):
    data = to_bytes(container)
    with pytest.raises(BitstreamError, match="not a .dnerv file"):
        from_bytes(b"RIFF" + data[4:])
    with pytest.raises(BitstreamError, match="not a .dnerv file"):
        from_bytes(b"xy")


def test_unsupported_version(container):
    data = bytearray(to_bytes(container))
    struct.pack_into("<H", data, len(MAGIC), 99)
    with pytest.raises(BitstreamError, match="version 99"):
        from_bytes(bytes(data))
    struct.pack_into("<H", data, len(MAGIC), 1)
    with pytest.raises(BitstreamError, match="version 1 .*encode the videos again.*versions 2, 3"):
        from_bytes(bytes(data))


@pytest.mark.parametrize("cut", [0, 3, 9, 12, 30, 100, -5, -1])
def test_truncated(container, cut):
    data = to_bytes(container)
    with pytest.raises(BitstreamError, match="truncated"):
        from_bytes(data[:cut] if cut else b"")


def test_trailing_bytes_are_inconsistent(container):
    with pytest.raises(BitstreamError, match="inconsistent section lengths"):
        from_bytes(to_bytes(container) + b"\0")


def test_corruption_anywhere_is_caught(container):
    data = to_bytes(container)
    table_end = len(MAGIC) + 4 + 3 * 12
    for pos in range(table_end, len(data), 7):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(BitstreamError, match="checksum"):
            from_bytes(bytes(bad))


def test_section_table_lengths_must_agree(container):
    data = bytearray(to_bytes(container))
    # move one byte from the WGTS section to the HEAD section and fix the checksum:
    # sizes still add up, so only the content checks can object
    head_len, = struct.unpack_from("<Q", data, len(MAGIC) + 4 + 4)
    struct.pack_into("<Q", data, len(MAGIC) + 4 + 4, head_len + 1)
    wgts_len, = struct.unpack_from("<Q", data, len(MAGIC) + 4 + 16)
    struct.pack_into("<Q", data, len(MAGIC) + 4 + 16, wgts_len - 1)
    body = bytes(data[:-4])
    with pytest.raises(BitstreamError, match="header"):
        from_bytes(body + struct.pack("<I", zlib.crc32(body)))


def test_bpp_counts_every_byte():
    assert bits_per_pixel(1000, 176 * 144 * 10) == pytest.approx(8000 / 253440)
