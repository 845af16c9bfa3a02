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

Every round runs all four variants in turn, so that they share this kind of VM's drift (its
speed moves by 10-40% within minutes, which made ratios of variants timed one after the other
disagree between runs by more than the targets' margins). pytest-benchmark times whole rounds;
each variant's median and the medians of the per-round ratios against the eager reference and
the research layout are in ``extra_info`` and printed (``-s``).

Run: ``DNERV_BENCH_MALLOC=heap pytest benches/test_bench_cpu_pipeline.py --benchmark-enable -s``
(big blocks on the heap for every variant; ``DNERV_BENCH_ROUNDS`` rounds after one warm-up,
default 7 for decode and 5 for training). With ``DNERV_BENCH_RECORD=1`` the figures are also
written to ``docs/results/decode_speed.json`` and ``docs/results/train_step.json``
(benches/results.py), from which the documentation's tables are generated.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Callable, Iterator

import pytest
import torch

from composed_dnerv import composed_forward
from dnerv_fast import DNeRV, ops
from dnerv_fast.profiling.decode_speed import _clip_workload
from dnerv_fast.train.loss import reconstruction_loss
from results import record

pytestmark = pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="cpu backend not built")

VARIANTS = ["research_layout", "eager_reference", "cpu_fused_ops", "cpu"]
BASELINES = ["eager_reference", "research_layout"]
ROUNDS = os.environ.get("DNERV_BENCH_ROUNDS")    # default: per test
RECORD = os.environ.get("DNERV_BENCH_RECORD") == "1"


def _record(name: str, workload: str, info: dict[str, float]) -> None:
    """Write this test's figures to docs/results/<name>.json (DNERV_BENCH_RECORD=1)."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("DNERV_BENCH_MALLOC", "DNERV_BENCH_ROUNDS")
                   if k in os.environ)
    command = (f"{env} DNERV_BENCH_RECORD=1 pytest benches/test_bench_cpu_pipeline.py "
               f"--benchmark-enable -s").strip()
    record(name, {"workload": workload, "variants": VARIANTS,
                  "malloc": os.environ.get("DNERV_BENCH_MALLOC", "default"), "figures": info},
           command)


@contextlib.contextmanager
def _variant(variant: str) -> Iterator[None]:
    """Run the enclosed code as ``variant``: its backend, and for ``cpu_fused_ops`` the
    Winograd convolutions and fused heads switched off."""
    choice = {"research_layout": "reference", "eager_reference": "reference",
              "cpu_fused_ops": "cpu,-block_conv3x3,-conv_head"}.get(variant, "cpu")
    with ops.use_backend(choice):
        yield


def _interleaved(benchmark, run: Callable[[str], None], rounds: int) -> dict[str, float]:
    """Time ``run(variant)`` for every variant in turn, ``rounds`` rounds after one warm-up;
    the variants' medians (s) and the medians of their per-round speed-ups over each
    baseline, also stored in ``benchmark.extra_info``."""
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}

    def one_round() -> None:
        for variant in VARIANTS:
            with _variant(variant):
                start = time.perf_counter()
                run(variant)
                times[variant].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=1)
    info: dict[str, float] = {"rounds": rounds}
    for variant, seconds in times.items():
        info[f"{variant}_s"] = statistics.median(seconds[1:])              # [0]: warm-up
    for variant in VARIANTS:
        for base in BASELINES:
            if base != variant:
                info[f"{variant}_speedup_vs_{base}"] = statistics.median(
                    b / v for b, v in zip(times[base][1:], times[variant][1:]))
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k} {v:.4g}" for k, v in info.items()))
    return info


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


def test_decode(benchmark, decode_workload):
    """One UVG-M clip decoded by each variant, interleaved."""
    model, example = decode_workload

    def run(variant: str) -> None:
        with torch.no_grad():
            _forward(model, variant, *example)

    info = _interleaved(benchmark, run, int(ROUNDS or 7))
    if RECORD:
        _record("decode_speed", "decode one UVG-M clip (8 frames of 256x320), fp32", info)


def test_train_step(benchmark, train_workload):
    """One UVG-XS training step (2 clips) by each variant, interleaved; every variant steps
    the same model, at a learning rate too small to change its speed."""
    model, example = train_workload
    B, T = example[0].shape[0], example[0].shape[2]
    target = torch.rand(B, 3, T, *model.config.patch_size, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(B, T, dtype=torch.bool)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def run(variant: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = reconstruction_loss(_forward(model, variant, *example), target, mask)
        loss.backward()
        optimizer.step()

    info = _interleaved(benchmark, run, int(ROUNDS or 5))
    if RECORD:
        _record("train_step", "one UVG-XS training step (2 clips of 8 frames, 256x320), fp32",
                info)
