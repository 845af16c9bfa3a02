"""PSNR exactly, SSIM on known cases, MS-SSIM against pytorch-msssim."""
import math

import pytest
import pytorch_msssim
import torch

from dnerv_fast.metrics import (MS_SSIM_MIN_SIDE, MS_SSIM_PADDED, MS_SSIM_STANDARD, ms_ssim,
                                ms_ssim_variant, pad_for_ms_ssim, psnr, ssim)

PARITY = 1e-6  # the promise (the same operations in the same order: in practice 0)


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


def _reference(x, y):
    return pytorch_msssim.ms_ssim(x, y, data_range=1, size_average=False)


def _pair(n, h, w, sigma, seed):
    x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return noisy(x, sigma, seed + 1).double(), x


@pytest.mark.parametrize("h, w", [(161, 161), (161, 200), (170, 231), (256, 384), (300, 162)])
def test_ms_ssim_equals_pytorch_msssim_where_it_accepts_the_size(h, w):
    assert ms_ssim_variant(h, w) == MS_SSIM_STANDARD
    for sigma, seed in [(0.02, 0), (0.1, 1), (0.6, 2)]:   # 0.6: negative cs terms, clamped
        y, x = _pair(2, h, w, sigma, seed)
        assert (ms_ssim(y, x) - _reference(y, x)).abs().max().item() < PARITY
    assert torch.allclose(ms_ssim(x, x), torch.ones(2, dtype=x.dtype), atol=1e-12)


def test_minimum_side_is_the_librarys():
    assert MS_SSIM_MIN_SIDE == 161
    frames = torch.rand(1, 3, MS_SSIM_MIN_SIDE - 1, 200)
    with pytest.raises(AssertionError, match="larger than 160"):
        _reference(frames, frames)
    frames = torch.rand(1, 3, MS_SSIM_MIN_SIDE, 200)
    assert _reference(frames, frames).item() == pytest.approx(1.0)
    assert ms_ssim_variant(160, 1920) == ms_ssim_variant(1080, 160) == MS_SSIM_PADDED
    assert MS_SSIM_PADDED == "reflect-pad-161"


@pytest.mark.parametrize("h, w", [(144, 176), (64, 64), (20, 30), (160, 300), (2, 170)])
def test_small_frames_equal_pytorch_msssim_on_the_mirrored_frames(h, w):
    y, x = _pair(2, h, w, 0.1, 3)
    padded = pad_for_ms_ssim(x)
    assert padded.shape[-2:] == (max(h, MS_SSIM_MIN_SIDE), max(w, MS_SSIM_MIN_SIDE))
    got = ms_ssim(y, x)
    assert (got - _reference(pad_for_ms_ssim(y), padded)).abs().max().item() < PARITY
    assert ms_ssim_variant(h, w) == MS_SSIM_PADDED


def test_padding_mirrors_about_the_edges():
    x = torch.rand(1, 3, 144, 160, dtype=torch.float64)
    padded = pad_for_ms_ssim(x)                   # 17 rows: 8 above, 9 below; 1 column right
    assert padded.shape[-2:] == (161, 161)
    assert torch.equal(padded[..., 8:152, :160], x)
    assert torch.equal(padded[..., 8 - 1, :160], x[..., 1, :])
    assert torch.equal(padded[..., 152, :160], x[..., -2, :])
    assert torch.equal(padded[..., 8:152, 160], x[..., :, -2])


def test_one_pixel_frames_rejected():
    with pytest.raises(ValueError, match="2x2"):
        ms_ssim(torch.rand(1, 3, 1, 40), torch.rand(1, 3, 1, 40))


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
