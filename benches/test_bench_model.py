"""End-to-end decoding of one UVG-M clip: eager reference vs torch.compile vs fused backends.

Same weights, inputs and dtype for every variant, all in one run, so the medians compare.
Baselines: ``research_layout`` is the published code's composition (tests/composed_dnerv.py:
Conv3d everywhere, T-fold keyframe copies for grid_sample, concatenations, permute-based
PixelShuffle), what users ran before this package; ``eager_reference`` is this package's model
with the plain PyTorch reference ops; ``compiled_reference`` is ``torch.compile`` of that;
``compiled_fused_backend`` compiles the model with a fused backend's ops as custom ops.
Run: ``pytest benches/test_bench_model.py --benchmark-enable --benchmark-columns=median,iqr,rounds``
(``DNERV_BENCH_SIZE`` picks another configuration, ``DNERV_BENCH_DTYPE`` bf16/fp16).
"""
from __future__ import annotations

import os

import pytest
import torch

from composed_dnerv import composed_forward
from dnerv_fast import DNeRV, ops
from dnerv_fast.precision import DTYPES
from dnerv_fast.profiling.decode_speed import _clip_workload

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SIZE = os.environ.get("DNERV_BENCH_SIZE", "uvg-M")
DTYPE = DTYPES[os.environ.get("DNERV_BENCH_DTYPE", "fp32")]
FAST = [b for b in ops.available_backends(DEVICE.type) if b != "reference"]


@pytest.fixture(scope="module")
def workload():
    torch.manual_seed(0)
    model = DNeRV.from_config(SIZE).eval().to(DEVICE, DTYPE)
    example = _clip_workload(model, 1, DEVICE, DTYPE, torch.Generator().manual_seed(0))
    return model, example


def _run(benchmark, fn, example):
    def call():
        out = fn(*example)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return out

    with torch.no_grad():
        for _ in range(2):
            call()
        benchmark.pedantic(call, rounds=5 if DEVICE.type == "cpu" else 50, warmup_rounds=1)


@pytest.mark.benchmark(group=f"decode {SIZE} clip")
def test_research_layout(benchmark, workload):
    model, (embed, keys, start, end, t) = workload
    pair = torch.stack([keys[start], keys[end]], dim=2)            # [B, 3, 2, ph, pw]
    _run(benchmark, lambda: composed_forward(model, embed, pair, t), ())


@pytest.mark.benchmark(group=f"decode {SIZE} clip")
def test_eager_reference(benchmark, workload):
    model, example = workload
    with ops.use_backend("reference"):
        _run(benchmark, model.decode_clips, example)


@pytest.mark.benchmark(group=f"decode {SIZE} clip")
def test_compiled_reference(benchmark, workload):
    model, example = workload
    with ops.use_backend("reference"):
        _run(benchmark, torch.compile(model.decode_clips), example)


@pytest.mark.benchmark(group=f"decode {SIZE} clip")
@pytest.mark.parametrize("backend", FAST)
def test_fused_backend(benchmark, workload, backend):
    model, example = workload
    with ops.use_backend(backend):
        _run(benchmark, model.decode_clips, example)


@pytest.mark.benchmark(group=f"decode {SIZE} clip")
@pytest.mark.parametrize("backend", FAST)
def test_compiled_fused_backend(benchmark, workload, backend):
    model, example = workload
    with ops.use_backend(backend):
        _run(benchmark, torch.compile(model.decode_clips), example)
