"""Training throughput: today's loop (host batches, a host sync per step) against the new one
(data resident on the device, a sync every 50 steps), and the share of step time spent
outside forward, backward and the optimiser (goal: under 2%).

Each loop runs one epoch of ``train()`` over a synthetic video of exactly ``STEPS`` batches,
its setup included (placing the data, the optimiser: part of every encode, so the share is
an upper bound). ``compute`` is the floor: the same forward, backward and optimiser steps on
batches gathered beforehand, with no data work and no sync but the last;
``outside share = 1 - compute / loop``, from medians over ``ROUNDS`` rounds (after one
warm-up round), each round running all three in turn. On the CPU, whose speed drifts by
several percent between runs here, ``outside share in run`` is the steadier measure: the
time of the loop's own forward/backward and optimiser calls within the same run.
Run: ``pytest benches/test_bench_train.py --benchmark-enable -s`` (``DNERV_BENCH_TRAIN_SIZES``
e.g. ``tiny,uvg-XS,uvg-M``; ``DNERV_BENCH_TRAIN_STEPS`` steps per epoch, 40 on CUDA, 4 on the
CPU; ``DNERV_BENCH_ROUNDS`` (3); ``DNERV_BENCH_DTYPE`` fp32/bf16/fp16 as the training
precision; ``DNERV_BENCH_BATCH`` clips per step, default 8 on CUDA, 2 on the CPU).
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from typing import Callable, Iterator

import pytest
import torch

from dnerv_fast.clips.data import keyframe_images, prepare_video
from dnerv_fast.clips.decoder import ClipDecoder
from dnerv_fast.media.keyframes import encode_keyframe
from dnerv_fast.media.synthetic import moving_pattern
from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.train import TrainSettings, train
from dnerv_fast.train.distributed import Distributed
from dnerv_fast.train.mixed import Mixed, make_optimizer
from dnerv_fast.train.resident import ResidentClips
from dnerv_fast.train import trainer
from dnerv_fast.train.trainer import _step

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SIZES = os.environ.get("DNERV_BENCH_TRAIN_SIZES", "tiny,uvg-XS").split(",")
PRECISION = os.environ.get("DNERV_BENCH_DTYPE", "fp32")
BATCH = int(os.environ.get("DNERV_BENCH_BATCH", "8" if DEVICE.type == "cuda" else "2"))
STEPS = int(os.environ.get("DNERV_BENCH_TRAIN_STEPS", "40" if DEVICE.type == "cuda" else "4"))
ROUNDS = int(os.environ.get("DNERV_BENCH_ROUNDS", "3"))
# UVG as the paper trains it: 7 videos, 6 of 600 frames and 1 of 300, 24 patches each.
UVG_CLIPS_PER_EPOCH = 24 * (6 * math.ceil(600 / 8) + math.ceil(300 / 8))


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module", params=SIZES)
def workload(request):
    """A video of one patch row whose clips fill exactly STEPS batches."""
    model = DNeRV.from_config(request.param)
    ph, pw = model.config.patch_size
    T = model.config.clip_len
    clips = STEPS * BATCH
    video = moving_pattern(clips * T, ph, pw)
    keys = [encode_keyframe(f, "png")[0] for f in keyframe_images(video, model.config)]
    return request.param, prepare_video(video, model.config, "png", keys)


@contextlib.contextmanager
def _compute_clock() -> Iterator[list[float]]:
    """Sum the time spent in the loop's forward + backward (``trainer._step``) and optimiser
    step (``Mixed.step``) while active. Only on the CPU, where a call's time is its work (on
    CUDA the calls return before the kernels finish)."""
    inside = [0.0]
    step, optimise = trainer._step, Mixed.step

    def clocked(fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                inside[0] += time.perf_counter() - start
        return run

    trainer._step, Mixed.step = clocked(step), clocked(optimise)
    try:
        yield inside
    finally:
        trainer._step, Mixed.step = step, optimise


def _loop_seconds(size: str, video, loop: str) -> tuple[float, float]:
    """One epoch of ``train()`` with the ``loop`` data path, setup included: its seconds, and
    the seconds of forward, backward and optimiser within it (CPU; NaN on CUDA)."""
    settings = TrainSettings(epochs=1, batch_size=BATCH, precision=PRECISION, data=loop,
                             sync_every=1 if loop == "host" else 50)
    torch.manual_seed(0)
    model = DNeRV.from_config(size).to(DEVICE)
    _sync()
    with _compute_clock() if DEVICE.type == "cpu" else contextlib.nullcontext([math.nan]) \
            as inside:
        start = time.perf_counter()
        train(model, [video], settings, progress=False)
        _sync()
        return time.perf_counter() - start, inside[0]


def _compute_floor(size: str, video) -> Callable[[], float]:
    """A function timing the same steps' forward, backward and optimiser on batches
    gathered beforehand: no data work, no sync but the last."""
    torch.manual_seed(0)
    model = DNeRV.from_config(size).to(DEVICE)
    data = ResidentClips([video], model.config, DEVICE)
    batches = list(data.epoch(list(range(len(data))), BATCH))
    optimizer = make_optimizer(model.parameters(), 1e-4, PRECISION, DEVICE)
    mixed = Mixed(PRECISION, DEVICE)
    net = ClipDecoder(model)
    dist = Distributed(device=DEVICE)

    def seconds() -> float:
        _sync()
        start = time.perf_counter()
        for batch, weight in batches:
            loss, _ = _step(net, batch, "uvg", weight, dist, mixed)
            mixed.step(loss, optimizer)
        _sync()
        return time.perf_counter() - start
    return seconds


def test_train_loops(benchmark, workload):
    """The three variants in turn in every round, so that they share the machine's drift;
    pytest-benchmark times whole rounds, the per-variant medians are in ``extra_info``."""
    size, video = workload
    compute = _compute_floor(size, video)
    times: dict[str, list[float]] = {"host": [], "resident": [], "compute": []}
    in_run: dict[str, list[float]] = {"host": [], "resident": []}

    def one_round() -> None:
        for loop in ("host", "resident"):
            seconds, inside = _loop_seconds(size, video, loop)
            times[loop].append(seconds)
            in_run[loop].append(1 - inside / seconds)
        times["compute"].append(compute())

    benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=1)
    median = {name: statistics.median(t[1:]) for name, t in times.items()}   # [0]: warm-up
    info: dict[str, float | str | int] = {
        "batch": BATCH, "steps": STEPS, "rounds": ROUNDS, "precision": PRECISION,
        "device": str(DEVICE)}
    for name, seconds in median.items():
        info[f"{name}_s"] = seconds
        info[f"{name}_steps_per_s"] = STEPS / seconds
        info[f"{name}_frames_per_s"] = STEPS * BATCH * 8 / seconds
    for loop in ("host", "resident"):
        # against the compute floor's run: subject to the machine's drift between runs
        info[f"{loop}_outside_share"] = 1 - median["compute"] / median[loop]
        # within each run (CPU only): immune to drift
        info[f"{loop}_outside_share_in_run"] = statistics.median(in_run[loop][1:])
    info["uvg_1600_epoch_hours"] = \
        1600 * UVG_CLIPS_PER_EPOCH / (STEPS * BATCH / median["resident"]) / 3600
    benchmark.extra_info.update(info)
    print(f"\n{size}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in info.items()))
