"""The fused training loss op (``dnerv_fast.ops.ssim_loss``): parity of every backend with the
plain PyTorch reference (fresh seeds, odd sizes, inpainting masks, float32 / float64 / the
half types, forward sums and the gradient), SSIM equal to pytorch-msssim's, float64 gradient
checks, the fallback with one warning, and training on it by default.

Tolerances (relative to the largest value compared): float64 1e-12; float32 2e-5 for the sums
and 1e-5 for the gradient (sums of 10^4 - 10^5 terms in another order, SSIM's x^2 - mu^2
cancellation); float16 / bfloat16: the sums as float32 from the same half inputs (2e-5), the
gradient rounded to the half type (2e-3 / 1.6e-2). The Triton kernel runs under the
interpreter here (conftest sets TRITON_INTERPRET=1), the CUDA kernel where a GPU is present;
without one it is compiled by tests/test_cuda_compile.py.
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch
from op_cases import fresh_seed, reported_seed

from dnerv_fast import ops
from dnerv_fast.ops import loss_reference
from dnerv_fast.ops import ssim_loss as fused
from dnerv_fast.train.loss import reconstruction_loss

CPU_BUILT = "cpu" in ops.available_backends("cpu")
HAS_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# (frames, channels, height, width, masked, power): odd sizes, a shrunk window (7 < 11).
CASES = [(3, 3, 37, 29, False, 1), (2, 3, 23, 41, True, 2), (1, 2, 7, 12, True, 1)]
GRAD_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
SUM_TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 2e-5, torch.bfloat16: 2e-5}


def _inputs(case, dtype, seed, device="cpu"):
    n, c, h, w, masked, _ = case
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    ref = (out + 0.2 * torch.randn(n, c, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    visible = None
    if masked:  # a few holes, so that some windows stay whole
        visible = (torch.rand(n, 1, h, w, generator=g) > 0.004).double()
        visible[:, :, h // 2, w // 3] = 0
    cast = lambda t: None if t is None else t.to(device, dtype)
    return cast(out).requires_grad_(), cast(ref), cast(visible)


def _loss(sums):
    error, dissimilarity, pixels, windows = sums
    return 0.7 * error / pixels.clamp(min=1) + 0.3 * dissimilarity / windows.clamp(min=1)


def _run(backend, out, ref, visible, power):
    with ops.use_backend(backend):
        sums = fused.ssim_loss(out, ref, visible, power)
    (grad,) = torch.autograd.grad(_loss(sums), out)
    return [s.detach() for s in sums], grad


def _assert_parity(backend, case, dtype, device="cpu"):
    seed = fresh_seed()
    with reported_seed(seed):
        out, ref, visible = _inputs(case, dtype, seed, device)
        got, grad = _run(backend, out, ref, visible, case[-1])
        want = loss_reference.ssim_loss(out, ref, visible, case[-1])
        (want_grad,) = torch.autograd.grad(_loss(want), out)
        for name, a, b in zip(("error", "dissimilarity", "pixels", "windows"), got, want):
            assert a.dtype == b.dtype, name
            assert torch.allclose(a, b.detach(), rtol=SUM_TOL[dtype], atol=0), (name, a.item(), b.item())
        assert grad.dtype == dtype
        scale = want_grad.abs().max().item()
        err = (grad.double() - want_grad.double()).abs().max().item()
        assert err <= GRAD_TOL[dtype] * scale, (err, scale)


@pytest.mark.skipif(not CPU_BUILT, reason="cpu backend not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES)
def test_cpu_parity(case, dtype):
    _assert_parity("cpu", case, dtype)


@pytest.mark.skipif(not (HAS_CUDA or INTERPRET), reason="Triton needs a GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", CASES[1:])
def test_triton_parity(case, dtype):
    _assert_parity("triton", case, dtype, "cuda" if HAS_CUDA else "cpu")


@pytest.mark.skipif(not HAS_CUDA, reason="no GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES)
def test_cuda_parity(case, dtype):
    _assert_parity("cuda", case, dtype, "cuda")


@pytest.mark.parametrize("backend", ["reference"] + (["cpu"] if CPU_BUILT else []))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-9)])
def test_ssim_equals_pytorch_msssim(backend, dtype, tol):
    """1 - dissimilarity / windows is pytorch-msssim's ssim (11x11 Gaussian, sigma 1.5, data_range=1)."""
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    seed = fresh_seed()
    with reported_seed(seed):
        out, ref, _ = _inputs((2, 3, 48, 40, False, 1), dtype, seed)
        with ops.use_backend(backend):
            _, dissimilarity, _, windows = fused.ssim_loss(out.detach(), ref)
        theirs = pytorch_msssim.ssim(out.detach(), ref, data_range=1, size_average=True)
        assert abs((1 - dissimilarity / windows).item() - theirs.item()) <= tol


@pytest.mark.parametrize("backend", ["reference"] + (["cpu"] if CPU_BUILT else []))
@pytest.mark.parametrize("masked,power", [(False, 1), (True, 2)])
def test_gradcheck_float64(backend, masked, power):
    seed = fresh_seed()
    with reported_seed(seed):
        out, ref, visible = _inputs((1, 2, 13, 12, masked, power), torch.float64, seed)
        # |d| has a kink at 0: keep the differences away from it.
        ref = torch.where((out.detach() - ref).abs() < 1e-3, ref + 2e-3, ref)

        def loss(x):
            with ops.use_backend(backend):
                return _loss(fused.ssim_loss(x, ref, visible, power))

        assert torch.autograd.gradcheck(loss, (out,), eps=1e-6, atol=1e-7)


@pytest.mark.skipif(not CPU_BUILT, reason="cpu backend not built")
def test_saves_three_maps_only_for_a_gradient():
    out, ref, _ = _inputs((2, 3, 30, 27, False, 1), torch.float32, 0)
    _, saved = fused._fused(out.detach(), ref, None, 1, False, "cpu")
    assert saved.numel() == 0
    _, saved = fused._fused(out.detach(), ref, None, 1, True, "cpu")
    assert saved.shape == (3, 6, 20, 32) and saved.dtype == torch.float32  # Wo = 17 -> 32


def test_unavailable_backend_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setitem(fused.LOSS_BACKENDS, "cpu",
                        fused.LossBackend("cpu", "dnerv_fast.ops.no_such_module",
                                          fused.LOSS_BACKENDS["cpu"].capabilities))
    monkeypatch.setattr(fused, "_loaded", {})
    monkeypatch.setattr(fused, "_failed", {})
    monkeypatch.setattr(fused, "_resolved", {})
    monkeypatch.setattr(ops.registry, "_warned", set())
    out, ref, _ = _inputs((1, 3, 16, 16, False, 1), torch.float32, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ops.use_backend("cpu"):
            first = fused.ssim_loss(out, ref)
            fused.ssim_loss(out, ref)
    named = [w for w in caught if "ssim_loss backend 'cpu'" in str(w.message)]
    assert len(named) == 1
    want = loss_reference.ssim_loss(out, ref)
    assert all(torch.equal(a, b) for a, b in zip(first, want))


@pytest.mark.skipif(not CPU_BUILT, reason="cpu backend not built")
def test_training_uses_it_by_default_and_follows_the_reference_curve():
    """auto picks the fused CPU kernel; 25 AdamW steps fitting clips give the reference's
    loss curve to 1e-5 (relative), with an inpainting mask and a masked-out frame."""
    assert fused.resolved_name("cpu") == "cpu"
    g = torch.Generator().manual_seed(3)
    target = torch.rand(2, 3, 4, 24, 30, generator=g)
    start = torch.rand(2, 3, 4, 24, 30, generator=g)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 3] = False
    visible = (torch.rand(2, 1, 4, 24, 30, generator=g) > 0.002).float()
    curves = {}
    for backend in ("reference", "cpu"):
        param = torch.nn.Parameter(start.clone())
        opt = torch.optim.AdamW([param], lr=0.02)
        curve = []
        with ops.use_backend(backend):
            for _ in range(25):
                opt.zero_grad()
                loss = reconstruction_loss(param, target, mask, "uvg", visible)
                loss.backward()
                opt.step()
                curve.append(loss.item())
        curves[backend] = torch.tensor(curve, dtype=torch.float64)
    assert curves["reference"][-1] < 0.6 * curves["reference"][0]
    assert torch.allclose(curves["cpu"], curves["reference"], rtol=1e-5, atol=0)
