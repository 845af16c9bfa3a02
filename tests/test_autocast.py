"""The model under torch.autocast: every fused op gets one type, the warp samples at float32
coordinates, and the result follows fp32 (the fp32 path itself is tests/test_model*.py)."""
import warnings

import pytest
import torch

from dnerv_fast import ops
from dnerv_fast.model.autocast import autocast_dtype, fused
from dnerv_fast.model.dnerv import DNeRV

BACKENDS = ["reference", "cpu"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_model_runs_under_autocast_on_every_backend(backend, dtype):
    torch.manual_seed(0)
    model = DNeRV.from_config("tiny")
    c = model.config
    args = (torch.rand(2, c.embed_length, c.clip_len), torch.rand(2, 3, 2, *c.patch_size),
            torch.rand(2, c.clip_len))
    with ops.use_backend(backend):
        want = model(*args)
        with warnings.catch_warnings():
            warnings.simplefilter("error")          # no op falls back over mixed dtypes
            with torch.autocast("cpu", dtype=dtype):
                got = model(*args)
            got.float().sum().backward()
    assert got.dtype == dtype
    assert (got.float() - want).abs().max() < (0.02 if dtype == torch.bfloat16 else 0.002)
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
def test_warp_coordinates_stay_float32_under_autocast(backend):
    """A zero flow on a 300-pixel-wide map is the identity (up to the rounding of the result
    to bf16) only if the coordinates are: bf16 holds integers only up to 256, so bf16
    coordinates would sample pixel 256 for pixel 257, a neighbour of independent value."""
    start = torch.rand(1, 2, 4, 300)
    flow, t = torch.zeros(1, 4, 3, 4, 300), torch.zeros(1, 3)
    with ops.use_backend(backend), torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_dtype("cpu") == torch.bfloat16
        out = fused(ops.flow_warp, start, torch.rand(1, 2, 4, 300), flow, t)
    assert out.dtype == torch.bfloat16
    error = (out.float() - start.bfloat16().float().unsqueeze(2)).abs().max()
    assert error <= 2 ** -8


def test_outside_autocast_nothing_is_cast():
    x = torch.rand(3)
    assert autocast_dtype("cpu") is None
    assert fused(lambda a: a, x) is x
