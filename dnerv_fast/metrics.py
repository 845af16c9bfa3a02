"""Image quality metrics on [0, 1] values: PSNR, SSIM and MS-SSIM, per frame.

All functions take float tensors [N, C, H, W] (any leading shape for PSNR) and return one
value per frame. SSIM is differentiable: the training loss uses it.

SSIM follows Wang et al. (2004): 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
data range 1, no padding ("valid" window positions only).

MS-SSIM follows Wang et al. (2003): 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363,
0.1333), 2x2 average pooling between scales, contrast-structure terms at the fine scales and
full SSIM at the coarsest. Small frames: a scale is used only while its shorter side still
holds the 11x11 window, and the weights of the scales used are renormalised to sum to one.
For example 176x144 (carphone) uses 4 scales (144, 72, 36, 18 rows); the 5th (9 rows) is
dropped. Frames smaller than the window fall back to one-scale SSIM with a window shrunk to
the frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of each frame along dim 0 (data range 1), computed in float64.

    Identical frames give ``inf``. ``weight`` (broadcastable to ``x``, e.g. a 0/1 region
    [N, 1, H, W]) averages the squared error over the weighted values only; a frame whose
    weights are all zero gives ``nan``.
    """
    _check_pair(x, y)
    sq = (x.detach().double() - y.detach().double()).pow(2)
    if weight is None:
        mse = sq.flatten(1).mean(dim=1)
    else:
        w = weight.detach().double().expand_as(sq)
        mse = (sq * w).flatten(1).sum(dim=1) / w.flatten(1).sum(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() < 2:
        raise ValueError(f"need [N, ...] frames, got shape {tuple(x.shape)}")


def _gaussian(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of each channel of [N, C, H, W]."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps [N, C, H - window + 1, W - window + 1]."""
    g = _gaussian(window, SIGMA, x.dtype, x.device)
    c1, c2 = K1 ** 2, K2 ** 2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mu_x ** 2
    syy = _blur(y * y, g) - mu_y ** 2
    sxy = _blur(x * y, g) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    return lum * cs, cs


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame mean SSIM and mean contrast-structure term."""
    full, cs = _ssim_maps(x, y, window)
    return full.flatten(1).mean(1), cs.flatten(1).mean(1)


def _check_frames(x: torch.Tensor, y: torch.Tensor) -> None:
    _check_pair(x, y)
    if x.dim() != 4:
        raise ValueError(f"need frames [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"need float frames in [0, 1], got {x.dtype}")


def ssim_window(height: int, width: int) -> int:
    """Side of the SSIM window for frames of this size (shrunk to fit small frames)."""
    return min(WINDOW, height, width)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of each frame [N] of x, y [N, C, H, W] in [0, 1]; differentiable."""
    _check_frames(x, y)
    return _ssim_terms(x, y, ssim_window(*x.shape[-2:]))[0]


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Local SSIM [N, C, H - w + 1, W - w + 1] of each valid window position (w:
    :func:`ssim_window`); its per-frame mean is :func:`ssim`. Differentiable."""
    _check_frames(x, y)
    return _ssim_maps(x, y, ssim_window(*x.shape[-2:]))[0]


def ms_ssim_scales(height: int, width: int) -> int:
    """How many of the 5 MS-SSIM scales frames of this size use (see module docstring)."""
    side, scales = min(height, width), 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= WINDOW:
        scales += 1
        side //= 2
    return scales


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of each frame [N] of x, y [N, C, H, W] in [0, 1]."""
    _check_frames(x, y)
    scales = ms_ssim_scales(*x.shape[-2:])
    if scales == 0:
        return ssim(x, y)
    w = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    result = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(scales):
        full, cs = _ssim_terms(x, y, WINDOW)
        term = full if i == scales - 1 else cs
        result = result * term.clamp(min=0) ** w[i]
        if i < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return result
