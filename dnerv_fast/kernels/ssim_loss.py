"""The fused training loss (pixel error + 1 - SSIM) in Triton, forward and backward.

Per program: one plane (frame, channel) and one tile of BLOCK x BLOCK input pixels, which
holds (BLOCK - w + 1)^2 whole windows (w: the window side). The separable Gaussian blur of a
tile is two matrix products with banded matrices built from the taps, ``Gv @ S @ Gh``
(``Gv[a, b] = g[b - a]``), so all five statistics (x, y, xx, yy, xy) are blurred in
registers / shared memory by ``tl.dot`` and feed the SSIM formula without reaching memory.
The same products with a band of ones count the hidden pixels under each window (inpainting).

The forward writes per-program partial sums (added in a fixed order by the caller: the
result is deterministic) and, when a gradient is needed, the three derivative maps of the
SSIM sum (as ``csrc/ssim_math.h`` defines them). The backward program owns a tile of
BLOCK - w + 1 input pixels a side; it reads the maps' windows that cover it and applies the
adjoint blur ``Gb @ M @ Gb^T`` with ``Gb[a, i] = g[a + w - 1 - i]`` (the blur of the
zero-padded map), then adds the pixel-error derivative.

Everything computes in float32 (``tl.dot`` with ``input_precision="ieee"``: no TF32).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

C1 = 0.01 ** 2
C2 = 0.03 ** 2
BLOCK = 64  # tile side; tiles overlap by w - 1 pixels


@triton.jit
def _blur(Gv, s, Gh):
    return tl.dot(tl.dot(Gv, s, input_precision="ieee"), Gh, input_precision="ieee")


@triton.jit
def _fwd(x_ptr, y_ptr, v_ptr, g_ptr, part_ptr, m_ptr, C, H, W, Ho, Wo, Wp, plane_stride, w,
         POWER: tl.constexpr, HAS_VIS: tl.constexpr, NEED_GRAD: tl.constexpr,
         BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    ti = tl.program_id(1)
    tj = tl.program_id(2)
    out = BLOCK - (w - 1)
    i0 = ti * out
    j0 = tj * out
    a = tl.arange(0, BLOCK)
    rows = i0 + a[:, None]
    cols = j0 + a[None, :]
    inside = (rows < H) & (cols < W)
    base = plane.to(tl.int64) * H * W
    x = tl.load(x_ptr + base + rows * W + cols, mask=inside, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + base + rows * W + cols, mask=inside, other=0.0).to(tl.float32)
    d = a[None, :] - a[:, None]
    band = (d >= 0) & (d < w)
    Gv = tl.load(g_ptr + d, mask=band, other=0.0)
    Gh = tl.trans(Gv)
    mx = _blur(Gv, x, Gh)
    my = _blur(Gv, y, Gh)
    exx = _blur(Gv, x * x, Gh)
    eyy = _blur(Gv, y * y, Gh)
    exy = _blur(Gv, x * y, Gh)
    valid = (a[:, None] < out) & (a[None, :] < out) & (rows < Ho) & (cols < Wo)
    weight = valid.to(tl.float32)
    # Pixels this program counts once: its first `out` rows / columns, all of them in the
    # last tile of a row or column of tiles.
    own = inside & ((a[:, None] < out) | (ti == tl.num_programs(1) - 1)) \
        & ((a[None, :] < out) | (tj == tl.num_programs(2) - 1))
    diff = x - y
    if POWER == 2:
        err = diff * diff
    else:
        err = tl.abs(diff)
    if HAS_VIS:
        vbase = (plane // C).to(tl.int64) * H * W
        v = tl.load(v_ptr + vbase + rows * W + cols, mask=inside, other=1.0).to(tl.float32)
        ones = band.to(tl.float32)
        hidden = _blur(ones, 1.0 - v, tl.trans(ones))
        weight = weight * (hidden < 0.5).to(tl.float32)
        err = err * v
        seen = tl.sum(tl.sum(tl.where(own, v, 0.0), 1), 0)
    else:
        seen = tl.sum(tl.sum(own.to(tl.float32), 1), 0)
    mxx = mx * mx
    myy = my * my
    mxy = mx * my
    a1 = 2.0 * mxy + C1
    b1 = mxx + myy + C1
    a2 = 2.0 * (exy - mxy) + C2
    b2 = (exx - mxx) + (eyy - myy) + C2
    inv = 1.0 / (b1 * b2)
    s = a1 * a2 * inv
    pid = (plane * tl.num_programs(1) + ti) * tl.num_programs(2) + tj
    tl.store(part_ptr + pid * 4 + 0, tl.sum(tl.sum(tl.where(own, err, 0.0), 1), 0))
    tl.store(part_ptr + pid * 4 + 1, tl.sum(tl.sum(weight * (1.0 - s), 1), 0))
    tl.store(part_ptr + pid * 4 + 2, seen)
    tl.store(part_ptr + pid * 4 + 3, tl.sum(tl.sum(weight, 1), 0))
    if NEED_GRAD:
        w_inv = weight * inv
        d_mx = 2.0 * w_inv * (my * (a2 - a1) - mx * s * (b2 - b1))
        d_xx = -2.0 * weight * s / b2
        d_xy = 2.0 * w_inv * a1
        moff = plane.to(tl.int64) * Ho * Wp + rows * Wp + cols
        tl.store(m_ptr + moff, d_mx, mask=valid)
        tl.store(m_ptr + plane_stride + moff, d_xx, mask=valid)
        tl.store(m_ptr + 2 * plane_stride + moff, d_xy, mask=valid)


@triton.jit
def _bwd(gs_ptr, x_ptr, y_ptr, v_ptr, g_ptr, m_ptr, gx_ptr, C, H, W, Ho, Wo, Wp, plane_stride, w,
         POWER: tl.constexpr, HAS_VIS: tl.constexpr, BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    out = BLOCK - (w - 1)
    r0 = tl.program_id(1) * out
    c0 = tl.program_id(2) * out
    a = tl.arange(0, BLOCK)
    # Map rows / columns r0 - (w - 1) + a: every window that covers this tile's pixels.
    mr = r0 - (w - 1) + a[:, None]
    mc = c0 - (w - 1) + a[None, :]
    in_map = (mr >= 0) & (mr < Ho) & (mc >= 0) & (mc < Wo)
    moff = plane.to(tl.int64) * Ho * Wp + mr * Wp + mc
    m1 = tl.load(m_ptr + moff, mask=in_map, other=0.0)
    m2 = tl.load(m_ptr + plane_stride + moff, mask=in_map, other=0.0)
    m3 = tl.load(m_ptr + 2 * plane_stride + moff, mask=in_map, other=0.0)
    e = a[:, None] + (w - 1) - a[None, :]
    Gb = tl.load(g_ptr + e, mask=(e >= 0) & (e < w), other=0.0)
    Gbt = tl.trans(Gb)
    t1 = _blur(Gb, m1, Gbt)
    t2 = _blur(Gb, m2, Gbt)
    t3 = _blur(Gb, m3, Gbt)
    rows = r0 + a[:, None]
    cols = c0 + a[None, :]
    keep = (a[:, None] < out) & (a[None, :] < out) & (rows < H) & (cols < W)
    base = plane.to(tl.int64) * H * W
    x = tl.load(x_ptr + base + rows * W + cols, mask=keep, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + base + rows * W + cols, mask=keep, other=0.0).to(tl.float32)
    ge = tl.load(gs_ptr + 0).to(tl.float32)
    gd = tl.load(gs_ptr + 1).to(tl.float32)
    diff = x - y
    if POWER == 2:
        pix = 2.0 * diff
    else:
        pix = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
    if HAS_VIS:
        vbase = (plane // C).to(tl.int64) * H * W
        pix = pix * tl.load(v_ptr + vbase + rows * W + cols, mask=keep, other=0.0).to(tl.float32)
    grad = ge * pix - gd * (t1 + x * t2 + y * t3)
    tl.store(gx_ptr + base + rows * W + cols, grad, mask=keep)


def _dims(out: torch.Tensor, taps: torch.Tensor):
    N, C, H, W = out.shape
    w = taps.numel()
    Ho, Wo = H - w + 1, W - w + 1
    Wp = -(-Wo // 16) * 16
    return N * C, C, H, W, w, Ho, Wo, Wp


def forward(out: torch.Tensor, ref: torch.Tensor, visible: torch.Tensor | None, taps: torch.Tensor,
            power: int, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums [4] float64, saved maps [3, N*C, Ho, Wp] float32 or empty); inputs contiguous."""
    P, C, H, W, w, Ho, Wo, Wp = _dims(out, taps)
    tile = BLOCK - (w - 1)
    grid = (P, triton.cdiv(Ho, tile), triton.cdiv(Wo, tile))
    part = torch.empty(grid[0] * grid[1] * grid[2], 4, device=out.device, dtype=torch.float32)
    saved = (torch.zeros(3, P, Ho, Wp, device=out.device, dtype=torch.float32) if need_grad
             else torch.empty(0, device=out.device, dtype=torch.float32))
    _fwd[grid](out, ref, visible if visible is not None else out, taps.float(), part, saved,
               C, H, W, Ho, Wo, Wp, P * Ho * Wp, w, POWER=power, HAS_VIS=visible is not None,
               NEED_GRAD=need_grad, BLOCK=BLOCK)
    sums = part.double().sum(0)
    return torch.cat([sums[:2], sums[2:] / C]), saved


def backward(grad_sums: torch.Tensor, out: torch.Tensor, ref: torch.Tensor,
             visible: torch.Tensor | None, saved: torch.Tensor, taps: torch.Tensor,
             power: int) -> torch.Tensor:
    P, C, H, W, w, Ho, Wo, Wp = _dims(out, taps)
    tile = BLOCK - (w - 1)
    grid = (P, triton.cdiv(H, tile), triton.cdiv(W, tile))
    gx = torch.empty_like(out)
    _bwd[grid](grad_sums, out, ref, visible if visible is not None else out, taps.float(), saved, gx,
               C, H, W, Ho, Wo, Wp, P * Ho * Wp, w, POWER=power, HAS_VIS=visible is not None, BLOCK=BLOCK)
    return gx
