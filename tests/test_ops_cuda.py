"""The CUDA backend (dnerv_fast/csrc/cuda_*.cu) beyond parity, which tests/test_ops_parity.py
checks: it builds where a GPU is, and the public ops route through it. Without a GPU the
kernels run on CPU tensors through the CUDA harness (tests/cuda_harness).
"""
from __future__ import annotations

import pytest
import torch

import cuda_harness
import dnerv_fast.ops as ops
from op_cases import flow_warp_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def cuda():
    from dnerv_fast.ops import cuda_backend

    if DEVICE == "cpu":
        with cuda_harness.emulated_cuda_backend() as backend:
            yield backend
        return
    try:
        cuda_backend.load()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"the CUDA extension does not build: {exc}")
    yield cuda_backend


def test_use_backend_routes_public_ops(cuda):
    start, end, flow, t = [x.float().to(DEVICE).requires_grad_() for x in flow_warp_inputs((1, 3, 2, 4, 5), 1)]
    with ops.use_backend("cuda"):
        assert ops.resolve(DEVICE)[0] == "cuda"
        out = ops.flow_warp(start, end, flow, t)
    assert "dnerv_fast_flow_warp" in type(out.grad_fn).__name__    # the custom op's autograd


def test_launch_past_grid_limit_is_refused(cuda):
    """Batch 65536 puts 65536 blocks on the grid's z axis: the launch is refused (the backend's
    limits decline such calls before they reach the kernel)."""
    x = torch.zeros(65536, 1, 1, device=DEVICE)
    fused, weight = torch.zeros(65536, 1, 1, device=DEVICE), torch.zeros(2, 1, device=DEVICE)
    assert cuda.limits("saf_modulate", x, fused, weight, None)
    with pytest.raises(RuntimeError, match="saf_forward"):
        cuda.extension("cuda").saf_forward(x, fused, weight, None, with_beta=True, channels_last=False)
