"""The whole model through every fast backend available here matches it through the reference.

Forward output and every parameter's gradient, fp32, and the forward output without autograd
(decoding). On CPU this runs the C++ backend on the
tiny configuration at two patch shapes, and the Triton kernels under the interpreter on a
smaller variant (strides of 2, 4-frame clips: the interpreter runs every program in Python,
and the tiny model takes minutes there); with a GPU, the CUDA and Triton backends take the
tiny configuration.
"""
import os

import pytest
import torch

from dnerv_fast import DNeRV, ops
from test_model import make_inputs, randomize_biases

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FAST = [name for name in ops.available_backends(DEVICE) if name != "reference"]
INTERPRETED = DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
SMALL = {"strides": (2, 2, 2, 2, 2), "clip_len": 4}


def cases() -> list:
    out = []
    for backend in FAST:
        if backend == "triton" and INTERPRETED:
            out.append(pytest.param(backend, {"patch_size": (32, 64), **SMALL}, 1, id="triton-small"))
        else:
            out += [pytest.param(backend, {"patch_size": p}, 2, id=f"{backend}-{p[0]}x{p[1]}")
                    for p in ((64, 64), (128, 64))]
    return out


def run(model: DNeRV, backend: str, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with ops.use_backend(backend):
        assert ops.resolve(DEVICE)[0] == backend     # no silent fallback
        out = model(*inputs)
    # A weighted sum, so every output value carries its own gradient.
    weights = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
    (out * weights).sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend,overrides,batch", cases())
def test_model_through_backend_matches_reference(backend, overrides, batch):
    torch.manual_seed(0)
    model = DNeRV.from_config("tiny", **overrides).to(DEVICE)
    randomize_biases(model)
    inputs = [x.to(DEVICE) for x in make_inputs(model.config, batch=batch, seed=3)]
    inputs[1] = model.normalize(inputs[1].sigmoid())
    expected, expected_grads = run(model, "reference", inputs)
    out, grads = run(model, backend, inputs)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        scale = expected_grads[name].abs().max().item() + 1e-12
        torch.testing.assert_close(grad / scale, expected_grads[name] / scale, atol=2e-4, rtol=0,
                                   msg=lambda m, n=name: f"{n}: {m}")
    # Decoding (no autograd graph) may take other layouts, e.g. the CPU backend's
    # channels-last maps; the frames must not change.
    with torch.no_grad(), ops.use_backend(backend):
        torch.testing.assert_close(model(*inputs), expected, atol=1e-5, rtol=1e-4)


def test_fast_backends_are_exercised():
    """The parity above is only worth something if a fast backend runs here."""
    assert FAST, f"no fast backend available on {DEVICE}"
