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


def _read_weights(wgts: bytes, shapes: dict[str, tuple[int, ...]], count: int
                  ) -> dict[str, torch.Tensor]:
    pos, scales = 0, []
    for shape in shapes.values():
        g = _groups(shape)
        scales.append(np.frombuffer(wgts, "<f4", g, pos))
        pos += 5 * g                                   # g f32 scales, then g u8 zero points
    lo, span = struct.unpack_from("<iI", wgts, pos)
    freq = np.frombuffer(wgts, "<u2", span, pos + 8)
    (words,) = struct.unpack_from("<I", wgts, pos + 8 + 2 * span)
    data = np.frombuffer(wgts, "<u4", words, pos + 12 + 2 * span)
    assert pos + 12 + 2 * span + 4 * words == len(wgts) and freq.max() == 65535
    model = constriction.stream.model.Categorical(freq.astype(np.float64), perfect=False)
    offsets = constriction.stream.stack.AnsCoder(data.astype(np.uint32)).decode(model, count) + lo
    out, start = {}, 0
    for (name, shape), scale in zip(shapes.items(), scales):
        n = int(np.prod(shape))
        o = torch.from_numpy(offsets[start:start + n].astype(np.float32)).reshape(len(scale), -1)
        out[name] = (o * torch.from_numpy(scale.astype(np.float32)).unsqueeze(1)).reshape(shape)
        start += n
    return out


def test_a_reader_following_the_format_document(tmp_path):
    src = write_video(moving_pattern(10, 64, 64, name="clip").frames, tmp_path / "clip.mp4")
    path = tmp_path / "clip.dnerv"
    encode([src], path, epochs=1, batch_size=2, progress=False)
    data = path.read_bytes()

    assert data[:8] == b"DNERVF\x1a\n" and struct.unpack_from("<HH", data, 8) == (1, 3)
    table = [struct.unpack_from("<4sQ", data, 12 + 12 * i) for i in range(3)]
    assert [tag for tag, _ in table] == [b"HEAD", b"WGTS", b"KEYF"]
    assert len(data) == 48 + sum(n for _, n in table) + 4
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    sections, pos = {}, 48
    for tag, n in table:
        sections[tag], pos = data[pos:pos + n], pos + n

    header = json.loads(sections[b"HEAD"].decode("utf-8"))
    assert sections[b"HEAD"] == json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    assert (header["format"], header["version"]) == ("dnerv_fast", 1)
    assert (header["keyframe_codec"], header["bits"]) == ("webp", 8)
    assert header["videos"] == [{"name": "clip", "height": 64, "width": 64, "frames": 10,
                                 "fps": 25.0}]

    shapes = {k: tuple(t.shape) for k, t in
              DNeRV(ModelConfig.from_dict(header["config"])).state_dict().items()}
    assert sum(int(np.prod(s)) for s in shapes.values()) == header["parameters"]
    weights = _read_weights(sections[b"WGTS"], shapes, header["parameters"])
    decoded = load(path).model.state_dict()
    assert all(torch.equal(weights[k], decoded[k]) for k in shapes)

    keyf, records = sections[b"KEYF"], []
    pos = 0
    while pos < len(keyf):
        (m,) = struct.unpack_from("<I", keyf, pos)
        records.append(keyf[pos + 4:pos + 4 + m])
        pos += 4 + m
    assert pos == len(keyf) and len(records) == 3      # frames 0, 8 and 9 of 10 (clip_len 8)
    assert all(r[:4] == b"RIFF" and r[8:12] == b"WEBP" for r in records)
