"""Image quality metrics on [0, 1] values: PSNR, SSIM and MS-SSIM, per frame; and PSNR on
YUV planes (Y, U, V and their weighted means as CompressAI, Cool-chic and DCVC report them,
at the source's peak: 1023 for 10 bits), at the end of this module.

All functions take float tensors [N, C, H, W] (any leading shape for PSNR) and return one
value per frame. SSIM is differentiable: the training loss uses it.

SSIM follows Wang et al. (2004): 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
data range 1, no padding ("valid" window positions only).

MS-SSIM is pytorch-msssim's ``ms_ssim(x, y, data_range=1)`` (version 1.0, the library
CompressAI and the D-NeRV authors use), to 1e-6 (tests/test_metrics.py; the same operations
in the same order, so in practice bit for bit): Wang et
al. (2003), 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average
pooling between scales (an odd side first gains a zero row or column at both ends, counted
in the averages, as in that library), contrast-structure terms at the 4 fine scales and full
SSIM at the coarsest, each clamped at 0; computed per channel, then averaged over channels.

That library refuses frames with a side under :data:`MS_SSIM_MIN_SIDE` (161 px: the
coarsest scale must still hold the 11x11 window). Such frames are mirrored first (reflect
padding, split between both ends, repeated for sides under 55 px) up to 161 px, then measured
as above: the value is exactly pytorch-msssim's on the padded frames, so anyone can reproduce
it with that library. This variant is named ``reflect-pad-161`` (``standard`` otherwise) by
:func:`ms_ssim_variant`, and evaluation outputs carry the name. Padding was chosen over
dropping coarse scales: the weights and the metric stay the published ones, and no value is
produced that the reference library cannot produce.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# pytorch-msssim's smallest accepted side: the 4 halvings leave the window room at the end.
MS_SSIM_MIN_SIDE = (WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1
MS_SSIM_STANDARD = "standard"
MS_SSIM_PADDED = f"reflect-pad-{MS_SSIM_MIN_SIDE}"


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
    """Normalised 1-D Gaussian, computed in float32 as pytorch-msssim does (so that MS-SSIM
    matches it to rounding, also in float64), then cast."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
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


def ms_ssim_variant(height: int, width: int) -> str:
    """Name of the MS-SSIM computed on frames of this size (see the module docstring)."""
    return MS_SSIM_STANDARD if min(height, width) >= MS_SSIM_MIN_SIDE else MS_SSIM_PADDED


def pad_for_ms_ssim(x: torch.Tensor) -> torch.Tensor:
    """Frames [N, C, H, W] mirrored up to :data:`MS_SSIM_MIN_SIDE` along each shorter side.

    A reflection adds at most side - 1 pixels at each end, so small sides take several.
    """
    while True:
        h, w = x.shape[-2:]
        need_h, need_w = max(MS_SSIM_MIN_SIDE - h, 0), max(MS_SSIM_MIN_SIDE - w, 0)
        if not (need_h or need_w):
            return x
        if min(h, w) < 2:
            raise ValueError(f"MS-SSIM needs frames of at least 2x2 pixels, got {w}x{h}")
        ph, pw = min(need_h, 2 * (h - 1)), min(need_w, 2 * (w - 1))
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of each frame [N] of x, y [N, C, H, W] in [0, 1] (see the module docstring)."""
    _check_frames(x, y)
    x, y = pad_for_ms_ssim(x), pad_for_ms_ssim(y)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=x.dtype, device=x.device)
    levels = []
    for i in range(len(MS_SSIM_WEIGHTS)):
        full, cs = (m.flatten(2).mean(2) for m in _ssim_maps(x, y, WINDOW))  # [N, C]
        if i < len(MS_SSIM_WEIGHTS) - 1:
            levels.append(cs.clamp(min=0))
            odd = [s % 2 for s in x.shape[-2:]]
            x, y = F.avg_pool2d(x, 2, padding=odd), F.avg_pool2d(y, 2, padding=odd)
    levels.append(full.clamp(min=0))
    return (torch.stack(levels) ** weights.view(-1, 1, 1)).prod(0).mean(1)


# --- PSNR on YUV planes, as the learned-codec literature reports it ------------------------

# How papers fold PSNR-Y, -U and -V into one figure (each named in every output):
# "psnr-yuv": CompressAI's (4 PSNR-Y + PSNR-U + PSNR-V) / 6, on 4:2:0 the figure most
# learned video codecs publish; "psnr-yuv-mse411": Cool-chic's, the MSEs weighted 4:1:1
# before one PSNR; "psnr-yuv-611": DCVC's (6 PSNR-Y + PSNR-U + PSNR-V) / 8.
YUV_PSNR_WEIGHTING = "(4 Y + U + V) / 6 (CompressAI)"


def plane_mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference of two planes, in float64."""
    if a.shape != b.shape:
        raise ValueError(f"planes differ in shape: {a.shape} vs {b.shape}")
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr_of_mse(mse: float, peak: float) -> float:
    """10 log10(peak^2 / mse); ``inf`` for identical planes."""
    return float("inf") if mse == 0 else float(10 * np.log10(peak * peak / mse))


def yuv_psnr(decoded: list[np.ndarray], reference: list[np.ndarray], peak: float
             ) -> dict[str, float]:
    """PSNR-Y, -U, -V and the three combined figures of one frame's planes, with ``peak``
    the largest sample value (2^bits - 1); a 4:0:0 frame's combined figures are its PSNR-Y
    and its U, V are NaN."""
    mse = [plane_mse(d, r) for d, r in zip(decoded, reference)]
    if len(mse) == 1:
        y = psnr_of_mse(mse[0], peak)
        nan = float("nan")
        return {"psnr-y": y, "psnr-u": nan, "psnr-v": nan, "psnr-yuv": y,
                "psnr-yuv-mse411": y, "psnr-yuv-611": y}
    y, u, v = (psnr_of_mse(m, peak) for m in mse)
    return {"psnr-y": y, "psnr-u": u, "psnr-v": v, "psnr-yuv": (4 * y + u + v) / 6,
            "psnr-yuv-mse411": psnr_of_mse((4 * mse[0] + mse[1] + mse[2]) / 6, peak),
            "psnr-yuv-611": (6 * y + u + v) / 8}
