"""The reference ops against independent formulations, and the backend registry rules."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from dnerv_fast import ops
from dnerv_fast.ops import reference
from op_cases import flow_warp_inputs, saf_inputs, tail_inputs


def test_zero_flow_warp_is_a_blend_of_the_keyframes():
    start, end, _, t = flow_warp_inputs((2, 3, 5, 4, 6), seed=1)
    flow = torch.zeros(2, 4, 5, 4, 6, dtype=torch.float64)
    out = ops.flow_warp(start, end, flow, t)
    tt = t[:, None, :, None, None]
    torch.testing.assert_close(out, (1 - tt) * start[:, :, None] + tt * end[:, :, None])


def test_integer_flow_shifts_and_clamps_at_the_border():
    start = torch.arange(20, dtype=torch.float64).view(1, 1, 4, 5)
    flow = torch.zeros(1, 4, 1, 4, 5, dtype=torch.float64)
    flow[:, 0] = 2.0      # sample two pixels to the right
    out = ops.flow_warp(start, start, flow, torch.zeros(1, 1, dtype=torch.float64))
    expected = start[..., [2, 3, 4, 4, 4]]
    torch.testing.assert_close(out[:, :, 0], expected)


def test_reference_ops_pass_gradcheck():
    warp = [x.requires_grad_() for x in flow_warp_inputs((1, 2, 2, 3, 4), seed=3)]
    assert torch.autograd.gradcheck(reference.flow_warp, warp)
    saf = [x.requires_grad_() for x in saf_inputs((1, 2, 2, 2, 3, 3), seed=4)]
    assert torch.autograd.gradcheck(reference.saf_modulate, saf)
    (y, cb, w, b), s = tail_inputs((1, 2, 2, 2, 2, 2), seed=5)
    args = [y.requires_grad_(), cb.requires_grad_(), s, w.requires_grad_(), b.requires_grad_()]
    assert torch.autograd.gradcheck(reference.upsample_tail, args)


def test_tail_matches_nn_pixelshuffle_and_grouped_conv():
    (y, cb, w, b), s = tail_inputs((2, 3, 4, 3, 5, 2), seed=6)
    B, _, T, H, W = y.shape
    frames = (y + cb[None, :, None, None, None]).transpose(1, 2).reshape(B * T, -1, H, W)
    g = F.gelu(torch.nn.PixelShuffle(s)(frames)).view(B, T, 3, H * s, W * s).transpose(1, 2)
    mix = F.conv2d(g.reshape(B, 3 * T, H * s, W * s), w.view(3 * T, T, 1, 1), b, groups=3)
    torch.testing.assert_close(ops.upsample_tail(y, cb, s, w, b), g + mix.view_as(g))


def test_public_ops_validate_inputs():
    start, end, flow, t = flow_warp_inputs((1, 2, 3, 4, 5), seed=0)
    with pytest.raises(ValueError, match=r"flow must be \[B=1, 4, T, H=4, W=5\]"):
        ops.flow_warp(start, end, flow[:, :2], t)
    with pytest.raises(TypeError, match="floating"):
        ops.flow_warp(start.long(), end, flow, t)
    with pytest.raises(ValueError, match=r"t must be \[B=1, T=3\]"):
        ops.flow_warp(start, end, flow, t[:, :2])
    x, fused, w, b = saf_inputs((1, 2, 3, 4, 5, 6), seed=0)
    with pytest.raises(ValueError, match=r"weight must be \[4, 6\]"):
        ops.saf_modulate(x, fused, w[:3], b)
    (y, cb, tw, tb), s = tail_inputs((1, 2, 3, 4, 5, 2), seed=0)
    with pytest.raises(ValueError, match="not a multiple of scale"):
        ops.upsample_tail(y[:, :7], None, s, tw, tb)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="one device"):
            ops.flow_warp(start, end.cuda(), flow, t)


def test_backend_choice_context_env_and_unknown(monkeypatch):
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    assert ops.requested_backend() == "auto"
    monkeypatch.setenv(ops.ENV_VAR, "reference")
    assert ops.requested_backend() == "reference"
    with ops.use_backend("auto"):
        assert ops.requested_backend() == "auto"
    with pytest.raises(ValueError, match="unknown backend"):
        with ops.use_backend("fortran"):
            pass
    assert "reference" in ops.available_backends("cpu")


def test_unavailable_backend_falls_back_with_one_warning(monkeypatch):
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    start, end, flow, t = flow_warp_inputs((1, 2, 3, 4, 5), seed=0)
    with ops.use_backend("cuda"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ops.flow_warp(start, end, flow, t)
        ops.flow_warp(start, end, flow, t)
    assert len([w for w in caught if "dnerv_fast" in str(w.message)]) <= 1
    torch.testing.assert_close(first, reference.flow_warp(start, end, flow, t))


def test_auto_names_a_backend_that_fails_to_load_once(monkeypatch):
    from dnerv_fast.ops import registry
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    monkeypatch.setitem(registry._failed, "cpu", "backend 'cpu' is unavailable: no compiler")
    monkeypatch.setattr(registry, "_loaded", {k: v for k, v in registry._loaded.items() if k != "cpu"})
    monkeypatch.setattr(registry, "_warned", set())
    monkeypatch.setattr(registry, "_resolved", {})
    start, end, flow, t = flow_warp_inputs((1, 2, 3, 4, 5), seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ops.resolve("cpu")[0] == "reference"
        ops.flow_warp(start, end, flow, t)
    messages = [str(w.message) for w in caught if "dnerv_fast" in str(w.message)]
    assert len(messages) == 1 and "no compiler" in messages[0] and "next backend" in messages[0]


class _OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func))
        return func(*args, **(kwargs or {}))


def test_reference_ops_build_no_tensor_from_python_data():
    """A tensor made from a Python list (aten.lift_fresh) is a host-to-device copy and sync on
    CUDA and breaks CUDA-graph capture of a call that falls back to the reference."""
    (y, cb, tw, tb), s = tail_inputs((1, 2, 3, 4, 5, 2), seed=7)
    with _OpLog() as log:
        reference.flow_warp(*flow_warp_inputs((1, 2, 3, 4, 5), seed=7))
        reference.saf_modulate(*saf_inputs((1, 2, 3, 4, 5, 6), seed=7))
        reference.upsample_tail(y, cb, s, tw, tb)
    assert "aten.grid_sampler_2d.default" in log.ops
    assert "aten.lift_fresh.default" not in log.ops


def test_capabilities_are_data_with_reasons():
    import torch

    from dnerv_fast.ops import registry
    caps = registry.BACKENDS["triton"].kernels
    x = torch.zeros(1, 2, 1, 2, 2, dtype=torch.float64)
    reasons = caps["saf_modulate"].not_supported_reasons((x, x.float(), torch.zeros(4, 2), None))
    assert any("float64" in r for r in reasons) and any("mixed dtypes" in r for r in reasons)
    half = torch.zeros(1, 2, 2, 2, dtype=torch.float16)
    coords = (torch.zeros(1, 4, 1, 2, 2), torch.zeros(1, 1))     # flow and t may be float32
    assert caps["flow_warp"].not_supported_reasons((half, half, *coords)) == []
    assert registry.BACKENDS["reference"].kernels["saf_modulate"].not_supported_reasons(
        (x, x.float(), torch.zeros(4, 2), None)) == []
    assert "cpu with TRITON_INTERPRET=1" in caps["saf_modulate"].describe()
    # every fast path is an entry: the decoding-only CPU kernels too, and half SAF is not CUDA's
    cpu = registry.BACKENDS["cpu"].kernels
    assert not cpu["block_conv3x3"].backward and cpu["block_conv3x3"].min_frame_side == 8
    assert not cpu["conv_head"].backward
    assert torch.bfloat16 not in registry.BACKENDS["cuda"].kernels["saf_modulate"].dtypes


def test_unknown_backend_in_the_environment_warns_once_and_uses_auto(monkeypatch):
    monkeypatch.setenv(ops.ENV_VAR, "bogus")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ops.requested_backend() == "auto"
        assert ops.requested_backend() == "auto"
    messages = [str(c.message) for c in caught]
    assert len(messages) == 1 and "bogus" in messages[0] and "reference" in messages[0], messages
    monkeypatch.setenv(ops.ENV_VAR, "cpu,-block_conv3x3")
    from dnerv_fast.ops import registry
    assert registry.request() == registry.Request("cpu", frozenset({"block_conv3x3"}))


def test_backends_command_shows_every_backend_and_why_it_is_unavailable(capsys):
    from dnerv_fast.cli import main
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in ("reference", "cpu", "cuda", "triton"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), out
    for op in ("flow_warp", "saf_modulate", "upsample_tail", "block_conv3x3", "conv_head"):
        assert any(line.strip().startswith(op + " ") for line in out.splitlines()), out
    cuda = next(line for line in out.splitlines() if line.startswith("cuda "))
    assert "loaded" in cuda or "unavailable" in cuda
