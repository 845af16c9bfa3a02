"""Parity of the CUDA backend (csrc/cuda_*.cu) with the reference ops, forward and backward.

Skipped without a GPU. Same cases as tests/test_ops_cpu.py, on CUDA tensors.
"""
from __future__ import annotations

import pytest
import torch

import dnerv_fast.ops as ops
from dnerv_fast.ops import reference
from op_cases import (SAF_SHAPES, TAIL_SHAPES, WARP_SHAPES, assert_parity, flow_warp_inputs,
                      saf_inputs, tail_inputs)
from test_ops_cpu import DTYPES, SEEDS, _ids, off_grid, warp_reference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

DEVICE = "cuda"


@pytest.fixture(scope="module")
def cuda():
    from dnerv_fast.ops import cuda_backend

    try:
        cuda_backend.load()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the CUDA extension does not build: {exc}")
    return cuda_backend


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", WARP_SHAPES, ids=str)
def test_flow_warp_parity(cuda, shape, dtype, seed):
    inputs = flow_warp_inputs(shape, seed)
    inputs[2] = off_grid(inputs[2], dtype)
    assert_parity(cuda.flow_warp, warp_reference(dtype), inputs, dtype, device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_flow_warp_far_outside(cuda, dtype):
    inputs = flow_warp_inputs((2, 3, 4, 6, 7), seed=11, flow_scale=25.0)
    assert_parity(cuda.flow_warp, warp_reference(dtype), inputs, dtype, device=DEVICE)


def test_flow_warp_many_channels(cuda):
    """More channels than one channel group per thread, and a mid-size map."""
    inputs = flow_warp_inputs((1, 67, 8, 16, 20), seed=12)
    inputs[2] = off_grid(inputs[2], torch.float32)
    assert_parity(cuda.flow_warp, reference.flow_warp, inputs, torch.float32, device=DEVICE)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", SAF_SHAPES, ids=str)
def test_saf_modulate_parity(cuda, shape, dtype, seed):
    assert_parity(cuda.saf_modulate, reference.saf_modulate, saf_inputs(shape, seed), dtype, device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_saf_modulate_no_bias_many_channels(cuda, dtype):
    x, fused, weight, _ = saf_inputs((1, 130, 2, 17, 19, 40), seed=3)
    assert_parity(cuda.saf_modulate, reference.saf_modulate, [x, fused, weight, None], dtype, device=DEVICE)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("shape", TAIL_SHAPES, ids=str)
def test_upsample_tail_parity(cuda, shape, dtype, seed):
    (y, cb, tw, tb), s = tail_inputs(shape, seed)
    assert_parity(cuda.upsample_tail, reference.upsample_tail, [y, cb, s, tw, tb], dtype, device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_upsample_tail_no_biases_large_plane(cuda, dtype):
    """No biases, and an output plane spanning several thread blocks."""
    (y, _, tw, _), s = tail_inputs((2, 3, 4, 13, 17, 3), seed=5)
    assert_parity(cuda.upsample_tail, reference.upsample_tail, [y, None, s, tw, None], dtype, device=DEVICE)


def _gradcheck(fn, *inputs) -> None:
    inputs = [x.to(DEVICE).requires_grad_() if isinstance(x, torch.Tensor) else x for x in inputs]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_flow_warp(cuda):
    start, end, flow, t = flow_warp_inputs((1, 2, 3, 4, 5), seed=21)
    _gradcheck(cuda.flow_warp, start, end, off_grid(flow, torch.float64), t)


def test_gradcheck_saf_modulate(cuda):
    _gradcheck(cuda.saf_modulate, *saf_inputs((1, 3, 2, 3, 4, 5), seed=22))


def test_gradcheck_upsample_tail(cuda):
    (y, cb, tw, tb), s = tail_inputs((1, 2, 3, 2, 3, 2), seed=23)
    _gradcheck(cuda.upsample_tail, y, cb, s, tw, tb)


def test_use_backend_routes_public_ops(cuda):
    start, end, flow, t = [x.float().to(DEVICE).requires_grad_() for x in flow_warp_inputs((1, 3, 2, 4, 5), 1)]
    with ops.use_backend("cuda"):
        assert ops.resolve("cuda")[0] == "cuda"
        out = ops.flow_warp(start, end, flow, t)
    assert type(out.grad_fn).__name__ == "FlowWarpBackward"
