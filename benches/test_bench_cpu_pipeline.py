"""CPU decode of one UVG-M clip and one UVG-XS training step, every implementation side by side.

Same weights and inputs for all variants, fp32, 2 clips per training step (forward,
0.7 L1 + 0.3 (1 - SSIM) loss, backward, AdamW step).

* ``research_layout``: the published code's composition (tests/composed_dnerv.py);
* ``eager_reference``: this package's model on the plain PyTorch reference ops;
* ``cpu_fused_ops``: the ``cpu`` backend's fused ops only (Winograd convolutions and fused
  heads switched off: what the ``cpu`` backend decoded with before them);
* ``cpu``: the ``cpu`` backend with everything: in decoding, Winograd block convolutions,
  fused heads and the vectorised tail GELU; in training (autograd graph: no Winograd, eager
  heads) the fused ops forward and backward, whose tail uses the vectorised GELU both ways.

Run: ``DNERV_BENCH_MALLOC=heap pytest benches/test_bench_cpu_pipeline.py --benchmark-enable
--benchmark-columns=median,iqr,rounds`` (big blocks on the heap for every variant).
"""
from __future__ import annotations

import pytest
import torch

from composed_dnerv import composed_forward
from dnerv_fast import DNeRV, ops
from dnerv_fast.ops import cpu_heads, cpu_winograd
from dnerv_fast.profiling.decode_speed import _clip_workload
from dnerv_fast.train.loss import reconstruction_loss

pytestmark = pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="cpu backend not built")

VARIANTS = ["research_layout", "eager_reference", "cpu_fused_ops", "cpu"]


def _setup(monkeypatch, variant: str) -> str:
    """Switch the new CPU paths off for ``cpu_fused_ops``; the backend name to run."""
    if variant == "cpu_fused_ops":
        monkeypatch.setenv(cpu_winograd.ENV_VAR, "off")
        monkeypatch.setenv(cpu_heads.ENV_VAR, "off")
    return "reference" if variant in ("research_layout", "eager_reference") else "cpu"


def _workload(size: str, clips: int, train: bool):
    torch.manual_seed(0)
    model = DNeRV.from_config(size)
    model = model.train() if train else model.eval()
    embed, keys, start, end, t = _clip_workload(model, clips, torch.device("cpu"), torch.float32,
                                                torch.Generator().manual_seed(0))
    return model, (embed, keys, start, end, t)


def _forward(model, variant, embed, keys, start, end, t):
    if variant == "research_layout":
        return composed_forward(model, embed, torch.stack([keys[start], keys[end]], dim=2), t)
    return model.decode_clips(embed, keys, start, end, t)


@pytest.fixture(scope="module")
def decode_workload():
    return _workload("uvg-M", 1, train=False)


@pytest.fixture(scope="module")
def train_workload():
    return _workload("uvg-XS", 2, train=True)


@pytest.mark.benchmark(group="decode uvg-M clip (cpu)")
@pytest.mark.parametrize("variant", VARIANTS)
def test_decode(benchmark, monkeypatch, decode_workload, variant):
    model, example = decode_workload
    backend = _setup(monkeypatch, variant)
    with ops.use_backend(backend), torch.no_grad():
        fn = lambda: _forward(model, variant, *example)  # noqa: E731
        fn()
        benchmark.pedantic(fn, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="train step uvg-XS, 2 clips (cpu)")
@pytest.mark.parametrize("variant", VARIANTS)
def test_train_step(benchmark, monkeypatch, train_workload, variant):
    model, example = train_workload
    backend = _setup(monkeypatch, variant)
    B, T = example[0].shape[0], example[0].shape[2]
    target = torch.rand(B, 3, T, *model.config.patch_size, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, T, dtype=torch.bool)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = reconstruction_loss(_forward(model, variant, *example), target, mask)
        loss.backward()
        optimizer.step()

    with ops.use_backend(backend):
        step()
        benchmark.pedantic(step, rounds=3, warmup_rounds=1)
