"""Bidirectional bilinear flow warp with distance blend (Triton).

``out[b,c,t](p) = (1-t) * sample(start[b,c], p + flow[b,0:2,t](p))
                + t * sample(end[b,c], p + flow[b,2:4,t](p))``
with border padding and align_corners=True (grid_sample semantics), coordinates in fp32.

A program owns a block of pixels of one (b, t) and a block of channels: the four corner
offsets and bilinear weights are computed once per pixel and reused for every channel, and
the keyframes are read in place (any strides) instead of as a T-fold copy.

The backward pass scatters into the keyframe gradients and reduces the flow and t gradients
across channel blocks with ``tl.atomic_add`` on fp32 buffers, so on a GPU those gradients are
not bitwise deterministic from run to run (the order of the float additions varies).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _configs() -> list[triton.Config]:
    """Block sizes to try on a GPU; the interpreter gets one (autotuning there is very slow).

    Every GPU config gives 8 (pixel, channel) elements per thread, which compiles for sm_80
    and sm_90 without register spills in the backward kernel, though close to the limit (up
    to 254 registers in fp16, ptxas via tests/test_triton_aot.py). Narrow channel
    blocks are for the 3-channel RGB stage, wide ones for 64 channels on small maps.
    """
    if _INTERPRET:
        return [triton.Config({"BLOCK_P": 64, "BLOCK_C": 16}, num_warps=4)]
    return gpu_configs()


def gpu_configs() -> list[triton.Config]:
    """Every config of the GPU list (see :func:`_configs`)."""
    return [
        triton.Config({"BLOCK_P": bp, "BLOCK_C": bc}, num_warps=nw)
        for bp, bc, nw in ((32, 32, 4), (64, 16, 4), (128, 8, 4), (256, 4, 4), (64, 32, 8),
                           (128, 16, 8), (256, 8, 8))
    ]


def _prune(configs: list[triton.Config], named_args: dict, **_) -> list[triton.Config]:
    """Skip blocks much larger than the work (3 channels, or a 4x5 map); never all of them."""
    c_cap = max(4, triton.next_power_of_2(named_args["C"]))
    p_cap = max(32, named_args["HW_KEY"])
    kept = [cfg for cfg in configs
            if cfg.kwargs["BLOCK_C"] <= c_cap and cfg.kwargs["BLOCK_P"] <= p_cap]
    return kept or configs


@triton.jit
def _sample_coords(px, py, fx, fy, W, H):
    """Corner indices, weights and clamp masks of one bilinear sample per pixel.

    ``gx``/``gy`` are 1 where the clamp is inactive: border padding passes no gradient to a
    coordinate outside (0, size-1), as grid_sample does.
    """
    # Float arithmetic, not .to(): W or H == 1 arrives as a constexpr when compiled.
    wmax = W - 1.0
    hmax = H - 1.0
    x_raw = px.to(tl.float32) + fx
    y_raw = py.to(tl.float32) + fy
    gx = ((x_raw > 0.0) & (x_raw < wmax)).to(tl.float32)
    gy = ((y_raw > 0.0) & (y_raw < hmax)).to(tl.float32)
    x = tl.minimum(tl.maximum(x_raw, 0.0), wmax)
    y = tl.minimum(tl.maximum(y_raw, 0.0), hmax)
    x0f = tl.floor(x)
    y0f = tl.floor(y)
    ax = x - x0f
    ay = y - y0f
    x0 = x0f.to(tl.int32)
    y0 = y0f.to(tl.int32)
    x1 = tl.minimum(x0 + 1, W - 1)
    y1 = tl.minimum(y0 + 1, H - 1)
    return x0, x1, y0, y1, ax, ay, gx, gy


@triton.jit
def _gather4(base, chan_off, x0, x1, y0, y1, sh, sw, mask):
    """Load the four corners [BLOCK_C, BLOCK_P] of a keyframe as fp32."""
    r0 = (y0 * sh)[None, :]
    r1 = (y1 * sh)[None, :]
    c0 = (x0 * sw)[None, :]
    c1 = (x1 * sw)[None, :]
    v00 = tl.load(base + chan_off + r0 + c0, mask=mask, other=0.0).to(tl.float32)
    v01 = tl.load(base + chan_off + r0 + c1, mask=mask, other=0.0).to(tl.float32)
    v10 = tl.load(base + chan_off + r1 + c0, mask=mask, other=0.0).to(tl.float32)
    v11 = tl.load(base + chan_off + r1 + c1, mask=mask, other=0.0).to(tl.float32)
    return v00, v01, v10, v11


@triton.jit
def _bilinear(v00, v01, v10, v11, ax, ay):
    top = v00 + (v01 - v00) * ax[None, :]
    bottom = v10 + (v11 - v10) * ax[None, :]
    return top + (bottom - top) * ay[None, :]


@triton.jit
def _pixel_block(pid, T, H, W, BLOCK_P: tl.constexpr):
    """(b, t, pixel offsets, pixel mask, x, y) of the pixel block owned by program ``pid``."""
    HW = H * W
    n_pb = tl.cdiv(HW, BLOCK_P)
    bt = pid // n_pb
    b = bt // T
    t = bt % T
    offs_p = (pid % n_pb) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < HW
    return b, t, offs_p, pmask, offs_p % W, offs_p // W


@triton.jit
def _load_flow(flow, b, t, px, py, pmask, sfb, sfc, sft, sfh, sfw):
    base = flow + b.to(tl.int64) * sfb + t.to(tl.int64) * sft + py * sfh + px * sfw
    f0 = tl.load(base, mask=pmask, other=0.0).to(tl.float32)
    f1 = tl.load(base + sfc, mask=pmask, other=0.0).to(tl.float32)
    f2 = tl.load(base + 2 * sfc, mask=pmask, other=0.0).to(tl.float32)
    f3 = tl.load(base + 3 * sfc, mask=pmask, other=0.0).to(tl.float32)
    return f0, f1, f2, f3


@triton.jit
def _warp_tile(flow, tdist, C, T, H, W, sfb, sfc, sft, sfh, sfw, stb, stt,
               BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's tile: (b, t), its pixel block, its channel block (int64 column), the
    tile mask, the four flow components per pixel and the blend weight of frame t."""
    b, t, offs_p, pmask, px, py = _pixel_block(tl.program_id(0), T, H, W, BLOCK_P)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (offs_c < C)[:, None] & pmask[None, :]
    f0, f1, f2, f3 = _load_flow(flow, b, t, px, py, pmask, sfb, sfc, sft, sfh, sfw)
    w = tl.load(tdist + b * stb + t * stt).to(tl.float32)
    return b, t, offs_p, pmask, px, py, offs_c.to(tl.int64)[:, None], mask, f0, f1, f2, f3, w


@triton.autotune(configs=_configs(), key=["C", "HW_KEY"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _flow_warp_fwd(
    start, end, flow, tdist, out,
    C, T, H, W, HW_KEY,
    ssb, ssc, ssh, ssw, esb, esc, esh, esw,
    sfb, sfc, sft, sfh, sfw, stb, stt,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b, t, offs_p, pmask, px, py, c64, mask, f0, f1, f2, f3, w = _warp_tile(
        flow, tdist, C, T, H, W, sfb, sfc, sft, sfh, sfw, stb, stt, BLOCK_P, BLOCK_C)
    b64 = b.to(tl.int64)

    x0, x1, y0, y1, ax, ay, _, _ = _sample_coords(px, py, f0, f1, W, H)
    v00, v01, v10, v11 = _gather4(start + b64 * ssb, c64 * ssc, x0, x1, y0, y1, ssh, ssw, mask)
    acc = (1.0 - w) * _bilinear(v00, v01, v10, v11, ax, ay)
    x0, x1, y0, y1, ax, ay, _, _ = _sample_coords(px, py, f2, f3, W, H)
    v00, v01, v10, v11 = _gather4(end + b64 * esb, c64 * esc, x0, x1, y0, y1, esh, esw, mask)
    acc += w * _bilinear(v00, v01, v10, v11, ax, ay)

    HW = H * W
    out_off = ((b64 * C + c64) * T + t) * HW + offs_p[None, :]
    tl.store(out + out_off, acc.to(out.dtype.element_ty), mask=mask)


@triton.jit
def _scatter4(base, chan_off, x0, x1, y0, y1, W, ax, ay, g, mask):
    """Add ``g`` [BLOCK_C, BLOCK_P] bilinearly into a contiguous fp32 [.., H, W] buffer."""
    bx = 1.0 - ax
    by = 1.0 - ay
    row0 = base + chan_off + (y0 * W)[None, :]
    row1 = base + chan_off + (y1 * W)[None, :]
    # Plain accumulation: no ordering with other memory operations is needed.
    tl.atomic_add(row0 + x0[None, :], g * (bx * by)[None, :], mask=mask, sem="relaxed")
    tl.atomic_add(row0 + x1[None, :], g * (ax * by)[None, :], mask=mask, sem="relaxed")
    tl.atomic_add(row1 + x0[None, :], g * (bx * ay)[None, :], mask=mask, sem="relaxed")
    tl.atomic_add(row1 + x1[None, :], g * (ax * ay)[None, :], mask=mask, sem="relaxed")


@triton.jit
def _warp_side_bwd(feat, sb, sc, sh, sw, gfeat, gflow_x, gflow_y, b64, c64, px, py, fx, fy,
                   H, W, C, go, mask, pmask, NEED_FEAT: tl.constexpr, NEED_FLOW: tl.constexpr):
    """Backward of one side of the warp given ``go`` = dL/d(sampled value), already blended.

    Returns the sampled values (for the gradient of t).
    """
    x0, x1, y0, y1, ax, ay, gx, gy = _sample_coords(px, py, fx, fy, W, H)
    v00, v01, v10, v11 = _gather4(feat + b64 * sb, c64 * sc, x0, x1, y0, y1, sh, sw, mask)
    if NEED_FEAT:
        _scatter4(gfeat + b64 * C * H * W, c64 * H * W, x0, x1, y0, y1, W, ax, ay, go, mask)
    if NEED_FLOW:
        dx = (v01 - v00) * (1.0 - ay)[None, :] + (v11 - v10) * ay[None, :]
        dy = (v10 - v00) * (1.0 - ax)[None, :] + (v11 - v01) * ax[None, :]
        tl.atomic_add(gflow_x, tl.sum(go * dx, axis=0) * gx, mask=pmask, sem="relaxed")
        tl.atomic_add(gflow_y, tl.sum(go * dy, axis=0) * gy, mask=pmask, sem="relaxed")
    return _bilinear(v00, v01, v10, v11, ax, ay)


@triton.autotune(configs=_configs(), key=["C", "HW_KEY"],
                 prune_configs_by={"early_config_prune": _prune},
                 reset_to_zero=["gstart", "gend", "gflow", "gt"])
@triton.jit
def _flow_warp_bwd(
    grad_out, start, end, flow, tdist, gstart, gend, gflow, gt,
    C, T, H, W, HW_KEY,
    ssb, ssc, ssh, ssw, esb, esc, esh, esw,
    sfb, sfc, sft, sfh, sfw, stb, stt,
    NEED_START: tl.constexpr, NEED_END: tl.constexpr, NEED_FLOW: tl.constexpr,
    NEED_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """grad_out: contiguous [B,C,T,H,W]. Accumulates (fp32, contiguous, zeroed by the caller)
    into gstart/gend [B,C,H,W], gflow [B,4,T,H,W] and gt [B,T]."""
    b, t, offs_p, pmask, px, py, c64, mask, f0, f1, f2, f3, w = _warp_tile(
        flow, tdist, C, T, H, W, sfb, sfc, sft, sfh, sfw, stb, stt, BLOCK_P, BLOCK_C)
    b64 = b.to(tl.int64)
    HW = H * W
    go = tl.load(grad_out + ((b64 * C + c64) * T + t) * HW + offs_p[None, :], mask=mask,
                 other=0.0).to(tl.float32)
    gf = gflow + (b64 * 4 * T + t) * HW + offs_p
    ws = _warp_side_bwd(start, ssb, ssc, ssh, ssw, gstart, gf, gf + T * HW, b64, c64, px, py,
                        f0, f1, H, W, C, go * (1.0 - w), mask, pmask, NEED_START, NEED_FLOW)
    we = _warp_side_bwd(end, esb, esc, esh, esw, gend, gf + 2 * T * HW, gf + 3 * T * HW, b64,
                        c64, px, py, f2, f3, H, W, C, go * w, mask, pmask, NEED_END, NEED_FLOW)
    if NEED_T:
        dt = tl.sum(tl.sum(go * (we - ws), axis=1), axis=0)
        tl.atomic_add(gt + b * T + t, dt, sem="relaxed")


def _hw_key(H: int, W: int) -> int:
    """Autotune key for the map size, bucketed to a power of two."""
    return triton.next_power_of_2(H * W)


def _grid(B: int, C: int, T: int, HW: int):
    return lambda meta: (B * T * triton.cdiv(HW, meta["BLOCK_P"]), triton.cdiv(C, meta["BLOCK_C"]))


def flow_warp_forward(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
    """[B,C,H,W] x2, [B,4,T,H,W], [B,T] -> [B,C,T,H,W] in ``start.dtype`` (any input strides)."""
    B, C, H, W = start.shape
    T = flow.shape[2]
    out = torch.empty((B, C, T, H, W), device=start.device, dtype=start.dtype)
    _flow_warp_fwd[_grid(B, C, T, H * W)](start, end, flow, t, out, C, T, H, W, _hw_key(H, W),
                         *start.stride(), *end.stride(), *flow.stride(), *t.stride())
    return out


def flow_warp_backward(grad_out: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                       flow: torch.Tensor, t: torch.Tensor, needs: tuple[bool, bool, bool, bool],
                       ) -> tuple[torch.Tensor | None, ...]:
    """Gradients for (start, end, flow, t), each in its input's dtype, None where not needed."""
    B, C, H, W = start.shape
    T = flow.shape[2]
    grad_out = grad_out.contiguous()
    dev = start.device
    bufs = [torch.zeros((B, C, H, W), device=dev, dtype=torch.float32) if needs[0] else None,
            torch.zeros((B, C, H, W), device=dev, dtype=torch.float32) if needs[1] else None,
            torch.zeros((B, 4, T, H, W), device=dev, dtype=torch.float32) if needs[2] else None,
            torch.zeros((B, T), device=dev, dtype=torch.float32) if needs[3] else None]
    # Unused gradients still need a pointer; a scratch scalar (which autotuning may zero) serves.
    dummy = torch.zeros(1, device=dev, dtype=torch.float32)
    args = [buf if buf is not None else dummy for buf in bufs]
    _flow_warp_bwd[_grid(B, C, T, H * W)](grad_out, start, end, flow, t, *args, C, T, H, W,
                                          _hw_key(H, W),
                         *start.stride(), *end.stride(), *flow.stride(), *t.stride(),
                         NEED_START=needs[0], NEED_END=needs[1], NEED_FLOW=needs[2],
                         NEED_T=needs[3])
    inputs = (start, end, flow, t)
    return tuple(None if buf is None else buf.to(x.dtype) for buf, x in zip(bufs, inputs))
