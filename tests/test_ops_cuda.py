"""The CUDA backend (dnerv_fast/csrc/cuda_*.cu) beyond parity, which tests/test_ops_parity.py
checks: it builds where a GPU is, and the public ops route through it. Skipped without a GPU.
"""
from __future__ import annotations

import pytest
import torch

import dnerv_fast.ops as ops
from op_cases import flow_warp_inputs

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


def test_use_backend_routes_public_ops(cuda):
    start, end, flow, t = [x.float().to(DEVICE).requires_grad_() for x in flow_warp_inputs((1, 3, 2, 4, 5), 1)]
    with ops.use_backend("cuda"):
        assert ops.resolve("cuda")[0] == "cuda"
        out = ops.flow_warp(start, end, flow, t)
    assert type(out.grad_fn).__name__ == "FlowWarpBackward"
