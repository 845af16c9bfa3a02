"""docs/FORMAT.md is true: a reader written from it alone decodes a real file's weights."""
from __future__ import annotations

import json
import struct
import zlib

import constriction
import numpy as np
import torch

from dnerv_fast.codec.pipeline import encode, load
from dnerv_fast.configs import ModelConfig
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.media.video_io import write_video


def _groups(shape: tuple[int, ...]) -> int:
    n = int(np.prod(shape))
    return shape[0] if len(shape) >= 2 and n // shape[0] >= 32 else 1


def _table(wgts: bytes, pos: int) -> tuple[tuple[int, np.ndarray] | None, int]:
    lo, span = struct.unpack_from("<hH", wgts, pos)
    c = np.frombuffer(wgts, np.uint8, span, pos + 4).astype(np.int64)
    freq = np.where(c > 0, (16 + ((c - 1) & 15)) << ((c - 1) >> 4), 0)
    return ((lo, freq) if span else None), pos + 4 + span


def _read_weights(wgts: bytes, shapes: dict[str, tuple[int, ...]], bits: int
                  ) -> tuple[dict[str, torch.Tensor], list[int]]:
    """The weights as the document says, and every tensor's mode."""
    pos, scales, zeros = 0, [], []
    for shape in shapes.values():
        g = _groups(shape)
        scales.append(np.frombuffer(wgts, "<f4", g, pos))
        zeros.append(np.frombuffer(wgts, np.uint8, g, pos + 4 * g).astype(np.int64))
        pos += 5 * g                                   # g f32 scales, then g u8 zero points
    shared, pos = _table(wgts, pos)
    modes, tables, levels = [], [], {}
    for i, shape in enumerate(shapes.values()):
        mode, pos = wgts[pos], pos + 1
        modes.append(mode)
        n = int(np.prod(shape))
        if mode == 0:
            tables.append(shared)
        elif mode == 1:
            table, pos = _table(wgts, pos)
            tables.append(table)
        else:
            assert mode == 2
            tables.append(None)
            packed = np.frombuffer(wgts, np.uint8, -(-n * bits // 8), pos)
            bitarr = np.unpackbits(packed, bitorder="little")[:n * bits].reshape(n, bits)
            levels[i] = bitarr.astype(np.int64) @ (1 << np.arange(bits))
            pos += -(-n * bits // 8)
    (words,) = struct.unpack_from("<I", wgts, pos)
    assert pos + 4 + 4 * words == len(wgts)
    coder = constriction.stream.stack.AnsCoder(
        np.frombuffer(wgts, "<u4", words, pos + 4).astype(np.uint32))
    out = {}
    for i, ((name, shape), scale, zero, table) in enumerate(zip(shapes.items(), scales, zeros,
                                                                tables)):
        n = int(np.prod(shape))
        if table is None:
            o = levels[i].reshape(len(zero), -1) - zero[:, None]
        elif np.count_nonzero(table[1]) == 1:
            o = np.full(n, table[0] + int(np.flatnonzero(table[1])[0]))
        else:
            model = constriction.stream.model.Categorical(table[1].astype(np.float64),
                                                          perfect=False)
            o = coder.decode(model, n) + table[0]
        o = torch.from_numpy(np.asarray(o, np.float32)).reshape(len(scale), -1)
        out[name] = (o * torch.from_numpy(scale.astype(np.float32)).unsqueeze(1)).reshape(shape)
    assert coder.is_empty()
    return out, modes


def test_a_reader_following_the_format_document(tmp_path):
    src = write_video(moving_pattern(10, 64, 64, name="clip").frames, tmp_path / "clip.mp4")
    path = tmp_path / "clip.dnerv"
    encode([src], path, epochs=1, batch_size=2, bits=6, prune=0.5, progress=False,
           keyframe_codec="webp")
    data = path.read_bytes()

    assert data[:8] == b"DNERVF\x1a\n" and struct.unpack_from("<HH", data, 8) == (3, 3)
    table = [struct.unpack_from("<4sQ", data, 12 + 12 * i) for i in range(3)]
    assert [tag for tag, _ in table] == [b"HEAD", b"WGTS", b"KEYF"]
    assert len(data) == 48 + sum(n for _, n in table) + 4
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    sections, pos = {}, 48
    for tag, n in table:
        sections[tag], pos = data[pos:pos + n], pos + n

    header = json.loads(sections[b"HEAD"].decode("utf-8"))
    assert sections[b"HEAD"] == json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    assert (header["format"], header["version"]) == ("dnerv_fast", 3)
    assert (header["keyframe_codec"], header["bits"]) == ("webp", 6)
    assert header["videos"] == [{"name": "clip", "height": 64, "width": 64, "frames": 10,
                                 "fps": 25.0, "bit_depth": 8, "chroma": "rgb"}]

    shapes = {k: tuple(t.shape) for k, t in
              DNeRV(ModelConfig.from_dict(header["config"])).state_dict().items()}
    assert sum(int(np.prod(s)) for s in shapes.values()) == header["parameters"]
    weights, modes = _read_weights(sections[b"WGTS"], shapes, header["bits"])
    decoded = load(path).model.state_dict()
    assert all(torch.equal(weights[k], decoded[k]) for k in shapes)
    assert set(modes) == {0, 1, 2}              # every mode was read

    keyf, records = sections[b"KEYF"], []
    pos = 0
    while pos < len(keyf):
        (m,) = struct.unpack_from("<I", keyf, pos)
        records.append(keyf[pos + 4:pos + 4 + m])
        pos += 4 + m
    assert pos == len(keyf) and len(records) == 3      # frames 0, 8 and 9 of 10 (clip_len 8)
    assert all(r[:4] == b"RIFF" and r[8:12] == b"WEBP" for r in records)
