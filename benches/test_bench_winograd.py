"""Winograd 3x3 block convolutions (dnerv_fast.ops.cpu_backend) against oneDNN (F.conv3d).

Every block shape of UVG-XS, -M and -L, one clip (8 frames), fp32, no autograd; one
benchmark group per shape, so the medians of oneDNN, F(2x2) and F(4x4) sit side by side. The
input layout is the one the decode feeds the conv (channels_last_3d from 32x40 up, see
cpu_backend.CHANNELS_LAST_MIN_PIXELS); F.conv3d gets the same tensor. Transformed weights are
cached, as in decoding.
Run: ``DNERV_BENCH_MALLOC=heap pytest benches/test_bench_winograd.py --benchmark-enable
--benchmark-columns=median,iqr,rounds``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dnerv_fast.configs import get_config
from dnerv_fast import ops
from dnerv_fast.ops import cpu_backend

pytestmark = pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="CPU extension not built here")


def block_shapes(size: str) -> list[tuple[int, int, int, int, int]]:
    """(stage, C_in, C_out * s * s, H, W) of each block convolution of ``size``."""
    config = get_config(size)
    widths = config.stage_widths()
    (h, w), shapes = config.stem_grid, []
    for i, s in enumerate(config.strides):
        shapes.append((i, widths[i], widths[i + 1] * s * s, h, w))
        h, w = h * s, w * s
    return shapes


CASES = [(size, *shape) for size in ("uvg-XS", "uvg-M", "uvg-L") for shape in block_shapes(size)]


@pytest.mark.parametrize("impl", ["onednn", "winograd_f2", "winograd_f4"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-stage{c[1]}" for c in CASES])
def test_block_conv(benchmark, case, impl):
    size, stage, cin, cout, H, W = case
    benchmark.group = f"conv3x3 {size} stage {stage}: {cin}->{cout} at {H}x{W}"
    g = torch.Generator().manual_seed(stage)
    x = torch.randn(1, cin, 8, H, W, generator=g)
    if H * W >= cpu_backend.CHANNELS_LAST_MIN_PIXELS:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    weight = torch.randn(cout, cin, 1, 3, 3, generator=g) / (3 * cin ** 0.5)
    if impl == "onednn":
        fn = lambda: F.conv3d(x, weight, None, padding=(0, 1, 1))  # noqa: E731
    else:
        tile = int(impl[-1])
        fn = lambda: cpu_backend.winograd_conv3x3(x, weight, tile=tile)  # noqa: E731
    with torch.no_grad():
        fn()
        benchmark.pedantic(fn, rounds=7, warmup_rounds=2)
