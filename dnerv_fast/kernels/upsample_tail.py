"""Block tail: +conv bias, PixelShuffle(s), exact GELU, GTMLP temporal mix with residual (Triton).

A program owns one (batch, output channel) and a block of output pixels, and loads all T
frames of them at once ([T_PAD, BLOCK_P]); the per-channel T x T mix is a broadcast-and-sum in
registers (T = 8 is below tl.dot's 16 minimum). The pixel shuffle is folded into the load
addresses, so the result is written once, as [B, C, T, H*s, W*s].

Backward recomputes g from y, writes dL/dy directly (the shuffle is a bijection) and leaves
per-program partial sums for the weight, bias and conv-bias gradients (no atomics, so those
gradients are deterministic), which torch reduces.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_SQRT1_2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


def gpu_configs() -> list[triton.Config]:
    """Pixel block sizes to try on a GPU."""
    return [triton.Config({"BLOCK_P": bp}, num_warps=nw)
            for bp, nw in ((64, 2), (128, 4), (256, 4), (256, 8), (512, 8))]


def _configs() -> list[triton.Config]:
    """The GPU list; one config under the interpreter (autotuning there is very slow)."""
    return [triton.Config({"BLOCK_P": 64}, num_warps=4)] if _INTERPRET else gpu_configs()


def _prune(configs: list[triton.Config], named_args: dict, **_) -> list[triton.Config]:
    """Skip pixel blocks beyond the (power-of-two) map size; never all of them."""
    kept = [cfg for cfg in configs if cfg.kwargs["BLOCK_P"] <= max(64, named_args["HWO_KEY"])]
    return kept or configs


@triton.jit
def _tile(pid, C, T, H, W, S, T_PAD: tl.constexpr, BLOCK_P: tl.constexpr):
    """Addresses of this program's [T_PAD, BLOCK_P] tile in y and in the output.

    Output pixel (h*S+i, w*S+j) of channel c reads y channel c*S*S + i*S + j at (h, w).
    """
    HWo = H * S * W * S
    n_pb = tl.cdiv(HWo, BLOCK_P)
    bc = pid // n_pb
    c = bc % C
    b64 = (bc // C).to(tl.int64)
    offs_p = (pid % n_pb) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_t = tl.arange(0, T_PAD)
    pmask = offs_p < HWo
    tmask = offs_t < T
    oh = offs_p // (W * S)
    ow = offs_p % (W * S)
    ch = c * S * S + (oh % S) * S + ow % S
    pix_in = (oh // S) * W + ow // S
    y_off = ((b64 * C * S * S + ch[None, :]) * T + offs_t[:, None]) * (H * W) + pix_in[None, :]
    out_off = ((bc.to(tl.int64) * T) + offs_t[:, None]) * HWo + offs_p[None, :]
    mask = tmask[:, None] & pmask[None, :]
    return c, bc, offs_p, offs_t, pmask, tmask, ch, y_off, out_off, mask


@triton.jit
def _preact(y, conv_bias, ch, y_off, mask, pmask, HAS_CB: tl.constexpr):
    v = tl.load(y + y_off, mask=mask, other=0.0).to(tl.float32)
    if HAS_CB:
        v += tl.load(conv_bias + ch, mask=pmask, other=0.0).to(tl.float32)[None, :]
    return v


@triton.jit
def _load_mix(tfc_w, c, offs_t, tmask, T):
    """W_c as [T_PAD (t_out), T_PAD (t_in)] fp32, zero outside T x T."""
    rows = c * T + offs_t
    return tl.load(tfc_w + rows[:, None] * T + offs_t[None, :],
                   mask=tmask[:, None] & tmask[None, :], other=0.0).to(tl.float32)


@triton.autotune(configs=_configs(), key=["C", "T", "HWO_KEY", "S"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _tail_fwd(y, conv_bias, tfc_w, tfc_b, out, C, T, H, W, S, HWO_KEY,
              HAS_CB: tl.constexpr, HAS_TB: tl.constexpr, T_PAD: tl.constexpr,
              BLOCK_P: tl.constexpr):
    c, bc, offs_p, offs_t, pmask, tmask, ch, y_off, out_off, mask = _tile(
        tl.program_id(0), C, T, H, W, S, T_PAD, BLOCK_P)
    v = _preact(y, conv_bias, ch, y_off, mask, pmask, HAS_CB)
    g = 0.5 * v * (1.0 + tl.math.erf(v * _SQRT1_2))
    wc = _load_mix(tfc_w, c, offs_t, tmask, T)
    res = g + tl.sum(wc[:, :, None] * g[None, :, :], axis=1)
    if HAS_TB:
        res += tl.load(tfc_b + c * T + offs_t, mask=tmask, other=0.0).to(tl.float32)[:, None]
    tl.store(out + out_off, res.to(out.dtype.element_ty), mask=mask)


# part_w / part_b have slots for the smallest block; a larger block fills fewer of them, so
# they are zeroed before each config is timed and before the chosen one runs (reset_to_zero),
# or the first call per key would sum stale partials left by the configs timed before it.
@triton.autotune(configs=_configs(), key=["C", "T", "HWO_KEY", "S"],
                 prune_configs_by={"early_config_prune": _prune}, reset_to_zero=["part_w", "part_b"])
@triton.jit
def _tail_bwd(grad_out, y, conv_bias, tfc_w, gy, part_w, part_b, part_cb,
              C, T, H, W, S, HWO_KEY, NPB_MAX, HAS_CB: tl.constexpr, NEED_Y: tl.constexpr,
              NEED_W: tl.constexpr, NEED_TB: tl.constexpr, NEED_CB: tl.constexpr,
              T_PAD: tl.constexpr, BLOCK_P: tl.constexpr):
    """fp32 partial sums: part_w [B*C, NPB_MAX, T, T] and part_b [B*C, NPB_MAX, T] per pixel
    block (rows past this config's block count stay untouched), part_cb [B, C, H*S*W*S] is
    dL/dy summed over T."""
    pid = tl.program_id(0)
    c, bc, offs_p, offs_t, pmask, tmask, ch, y_off, out_off, mask = _tile(
        pid, C, T, H, W, S, T_PAD, BLOCK_P)
    slot = bc.to(tl.int64) * NPB_MAX + pid % tl.cdiv(H * S * W * S, BLOCK_P)
    go = tl.load(grad_out + out_off, mask=mask, other=0.0).to(tl.float32)
    v = _preact(y, conv_bias, ch, y_off, mask, pmask, HAS_CB)
    cdf = 0.5 * (1.0 + tl.math.erf(v * _SQRT1_2))
    if NEED_W:
        g = v * cdf
        pw = tl.sum(go[:, None, :] * g[None, :, :], axis=2)
        tl.store(part_w + slot * T * T + offs_t[:, None] * T + offs_t[None, :], pw,
                 mask=tmask[:, None] & tmask[None, :])
    if NEED_TB:
        tl.store(part_b + slot * T + offs_t, tl.sum(go, axis=1), mask=tmask)
    if NEED_Y or NEED_CB:
        wc = _load_mix(tfc_w, c, offs_t, tmask, T)
        dg = go + tl.sum(wc[:, :, None] * go[:, None, :], axis=0)
        dv = dg * (cdf + v * _INV_SQRT_2PI * tl.exp(-0.5 * v * v))
        if NEED_Y:
            tl.store(gy + y_off, dv.to(gy.dtype.element_ty), mask=mask)
        if NEED_CB:
            HWo = H * S * W * S
            tl.store(part_cb + bc.to(tl.int64) * HWo + offs_p, tl.sum(dv, axis=0), mask=pmask)


def _launch_shape(y: torch.Tensor, scale: int) -> tuple[int, int, int, int, int, int]:
    B, CSS, T, H, W = y.shape
    return B, CSS // (scale * scale), T, H, W, triton.next_power_of_2(H * W * scale * scale)


def _grid(B: int, C: int, HWo: int):
    return lambda meta: (B * C * triton.cdiv(HWo, meta["BLOCK_P"]),)


def tail_forward(y: torch.Tensor, conv_bias: torch.Tensor | None, scale: int,
                 tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None) -> torch.Tensor:
    """y [B,C*s*s,T,H,W] -> [B,C,T,H*s,W*s] in y's dtype; one dtype throughout."""
    B, C, T, H, W, key = _launch_shape(y, scale)
    y, tfc_weight = y.contiguous(), tfc_weight.contiguous()
    out = torch.empty((B, C, T, H * scale, W * scale), device=y.device, dtype=y.dtype)
    cb = conv_bias.contiguous() if conv_bias is not None else y
    tb = tfc_bias.contiguous() if tfc_bias is not None else y
    _tail_fwd[_grid(B, C, H * W * scale * scale)](
        y, cb, tfc_weight, tb, out, C, T, H, W, scale, key, HAS_CB=conv_bias is not None,
        HAS_TB=tfc_bias is not None, T_PAD=triton.next_power_of_2(T))
    return out


def tail_backward(grad_out: torch.Tensor, y: torch.Tensor, conv_bias: torch.Tensor | None,
                  scale: int, tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None,
                  needs: tuple[bool, bool, bool, bool]) -> tuple[torch.Tensor | None, ...]:
    """Gradients for (y, conv_bias, tfc_weight, tfc_bias) in their dtypes, None where not needed."""
    B, C, T, H, W, key = _launch_shape(y, scale)
    need_y, need_cb, need_w, need_tb = needs
    need_cb = need_cb and conv_bias is not None
    need_tb = need_tb and tfc_bias is not None
    y, tfc_weight, grad_out = y.contiguous(), tfc_weight.contiguous(), grad_out.contiguous()
    HWo = H * W * scale * scale
    f32 = dict(device=y.device, dtype=torch.float32)
    # Partial-sum slots for the smallest block any config uses; larger blocks leave zeros.
    npb_max = triton.cdiv(HWo, min(cfg.kwargs["BLOCK_P"] for cfg in _tail_bwd.configs))
    gy = torch.empty_like(y) if need_y else None
    part_w = torch.zeros((B, C, npb_max, T, T), **f32) if need_w else None
    part_b = torch.zeros((B, C, npb_max, T), **f32) if need_tb else None
    part_cb = torch.empty((B, C, H, scale, W, scale), **f32) if need_cb else None
    outs = [gy, part_w, part_b, part_cb]
    cb = conv_bias.contiguous() if conv_bias is not None else grad_out
    _tail_bwd[_grid(B, C, HWo)](
        grad_out, y, cb, tfc_weight, *(grad_out if a is None else a for a in outs),
        C, T, H, W, scale, key, npb_max, HAS_CB=conv_bias is not None, NEED_Y=need_y,
        NEED_W=need_w, NEED_TB=need_tb, NEED_CB=need_cb, T_PAD=triton.next_power_of_2(T))
    g_cb = part_cb.sum(dim=(0, 2, 4)).reshape(-1).to(conv_bias.dtype) if need_cb else None
    g_w = part_w.sum(dim=(0, 2)).reshape(C * T, T).to(tfc_weight.dtype) if need_w else None
    g_tb = part_b.sum(dim=(0, 2)).reshape(C * T).to(tfc_bias.dtype) if need_tb else None
    return gy, g_cb, g_w, g_tb
