"""Small .dnerv files to attack: a tiny valid file built without training, and its parts.

Building the file directly (random weights, real keyframe codec) keeps each decode to a few
milliseconds, so that the fuzz test can try hundreds of hostile variants in seconds.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnerv_fast.codec.bitstream import Container, to_bytes
from dnerv_fast.media.keyframes import encode_keyframe
from dnerv_fast.codec.pipeline import _entries, _header
from dnerv_fast.codec.weights import pack_weights, quantize_state_dict
from dnerv_fast.configs import ModelConfig
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.clips.data import keyframe_images, prepare_video
from dnerv_fast.media.video_io import Video

SMALL = ModelConfig(fc_dim=4, strides=(2, 2, 2), patch_size=(32, 32), clip_len=4,
                    lower_width=4, encoder_dim=4, embed_levels=8, name="fuzz")


def small_container(names: tuple[str, ...] = ("a", "b"), frames: int = 6,
                    size: tuple[int, int] = (36, 40), seed: int = 0) -> Container:
    """A valid container of ``len(names)`` generated videos on the :data:`SMALL` network."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    prepared, videos = [], []
    for name in names:
        video = Video(name, rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8), 25.0)
        videos.append(video)
        coded = [encode_keyframe(f, "webp", 80)[0] for f in keyframe_images(video, SMALL)]
        prepared.append(prepare_video(video, SMALL, "webp", coded))
    model = DNeRV(SMALL)
    qsd = quantize_state_dict(model.state_dict(), 6)
    header = _header(SMALL, _entries(videos), "webp", 80, 6, 0.0,
                     sum(p.numel() for p in model.parameters()), None)
    return Container(header, pack_weights(qsd), [b for v in prepared for b in v.key_bytes])


def with_header(container: Container, **changes: Any) -> bytes:
    """The container's bytes (checksum recomputed) with top-level header fields replaced;
    a value of ``...`` deletes the field."""
    c = copy.deepcopy(container)
    for key, value in changes.items():
        if value is ...:
            c.header.pop(key, None)
        else:
            c.header[key] = value
    return to_bytes(c)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
