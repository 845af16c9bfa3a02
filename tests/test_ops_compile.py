"""The fused ops under torch.compile: torch.library registration, no graph breaks, same results.

The ops are the custom ops ``dnerv_fast::<op>`` (+ ``<op>_backward``) while Dynamo traces
(dnerv_fast/ops/dispatch.py), eagerly too. Checked here on CPU: the registrations themselves (opcheck:
schema, fake tensors, autograd), compiled-vs-eager equality of each op forward and backward
through the compiled-backend path, and the whole model's ``decode_clips`` traced with 0 graph
breaks through the fast CPU backend and the reference (the Triton kernels under the
interpreter are too slow for the whole model here; their op-level compile is checked).
"""
from __future__ import annotations

import os

import pytest
import torch

from dnerv_fast import DNeRV, ops
from op_cases import flow_warp_inputs, saf_inputs, tail_inputs

HAS_CPU_BACKEND = "cpu" in ops.available_backends("cpu")
pytestmark = pytest.mark.skipif(not HAS_CPU_BACKEND, reason="the cpu backend does not build here")


def _op_cases(dtype: torch.dtype = torch.float32) -> dict[str, list]:
    warp = [x.to(dtype) for x in flow_warp_inputs((1, 3, 2, 4, 5), seed=31)]
    saf = [x.to(dtype) for x in saf_inputs((1, 3, 2, 4, 5, 6), seed=32)]
    (y, cb, w, b), s = tail_inputs((1, 3, 2, 3, 4, 2), seed=33)
    return {"flow_warp": warp, "saf_modulate": saf,
            "upsample_tail": [y.to(dtype), cb.to(dtype), s, w.to(dtype), b.to(dtype)]}


def _leaves(args: list) -> list:
    return [a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]


@pytest.mark.parametrize("op", ["flow_warp", "saf_modulate", "upsample_tail"])
def test_custom_op_registration_passes_opcheck(op):
    args = _leaves(_op_cases()[op])
    with ops.use_backend("cpu"):
        torch.library.opcheck(getattr(torch.ops.dnerv_fast, op).default, tuple(args))


def _backends() -> list[str]:
    interpreted = os.environ.get("TRITON_INTERPRET") == "1" and "triton" in ops.available_backends("cpu")
    return ["cpu"] + (["triton"] if interpreted else [])


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("op", ["flow_warp", "saf_modulate", "upsample_tail"])
def test_compiled_op_matches_eager_forward_and_backward(op, backend):
    torch._dynamo.reset()
    fn = getattr(ops, op)
    args = _op_cases()[op]
    eager_in, compiled_in = _leaves(args), _leaves(args)
    with ops.use_backend(backend):
        expected = fn(*eager_in)
        compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
        out = compiled(*compiled_in)
    torch.testing.assert_close(out, expected)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (expected * weights).sum().backward()
    (out * weights).sum().backward()
    for a, b in zip(compiled_in, eager_in):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_decode_clips_compiles_without_graph_breaks(backend):
    """``torch._dynamo.explain`` of the tiny model's decode_clips: one graph, no breaks, and
    the compiled decode equals the eager one (aot_eager: Inductor's C++ build is too slow for
    CI; the op boundary is what this checks)."""
    from dnerv_fast.profiling.decode_speed import _clip_workload
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = DNeRV.from_config("tiny").eval()
    example = _clip_workload(model, 2, torch.device("cpu"), torch.float32, torch.Generator().manual_seed(0))
    with torch.no_grad(), ops.use_backend(backend):
        explanation = torch._dynamo.explain(model.decode_clips)(*example)
        assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]
        assert explanation.graph_count == 1
        expected = model.decode_clips(*example)
        torch._dynamo.reset()
        out = torch.compile(model.decode_clips, backend="aot_eager", fullgraph=True)(*example)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
