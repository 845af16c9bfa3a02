"""PSNR exactly, SSIM and MS-SSIM on known cases."""
import math

import pytest
import torch

from dnerv_fast.metrics import ms_ssim, ms_ssim_scales, psnr, ssim


def test_psnr_exact():
    x = torch.full((2, 3, 8, 8), 0.5)
    y = x.clone()
    y[0] += 0.125                    # dyadic values: exact in float32; mse 1/64
    y[1, :, :4] += 0.25              # mse (1/16) / 2 = 1/32
    got = psnr(y, x)
    assert got[0].item() == pytest.approx(10 * math.log10(64), abs=1e-12)
    assert got[1].item() == pytest.approx(10 * math.log10(32), abs=1e-12)
    assert math.isinf(psnr(x, x)[0].item())


def noisy(x, sigma, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("metric", [ssim, ms_ssim])
def test_identical_is_one_and_monotone_under_noise(metric):
    x = torch.rand(2, 3, 144, 176, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(metric(x, x), torch.ones(2), atol=1e-6)
    values = [metric(noisy(x, s), x).mean().item() for s in (0.01, 0.03, 0.1, 0.3)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.9


def test_ssim_of_uncorrelated_noise_is_small_and_symmetric():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    assert abs(ssim(a, b).item()) < 0.05
    assert ssim(a, b).item() == pytest.approx(ssim(b, a).item(), abs=1e-7)


def test_ssim_is_differentiable():
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    (1 - ssim(x, torch.rand(1, 3, 32, 32))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_ms_ssim_scales_for_small_frames():
    assert ms_ssim_scales(1024, 1920) == 5
    assert ms_ssim_scales(144, 176) == 4      # carphone: 9-row 5th scale dropped
    assert ms_ssim_scales(11, 11) == 1
    assert ms_ssim_scales(8, 8) == 0
    x = torch.rand(1, 3, 8, 8)
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)   # falls back to SSIM


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
