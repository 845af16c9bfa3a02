"""Spatially-adaptive fusion ``x * (1 + gamma) + beta``, [gamma; beta] = W @ fused + b (Triton).

Per program: one batch item, a block of channels and a block of pixels (T*H*W flattened).
The gamma tile and the beta tile are two ``tl.dot`` accumulations over K in the same program
and are consumed by the epilogue, so the style tensor never reaches memory.

Backward recomputes gamma the same way to form ``dx = g * (1 + gamma)`` and ``dgamma = g * x``;
the weight, fused and bias gradients are then plain matmuls/sums over ``[dgamma; g]`` in fp32.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _configs() -> list[triton.Config]:
    """The GPU list; one config under the interpreter (autotuning there is very slow)."""
    if _INTERPRET:
        return [triton.Config({"BLOCK_C": 16, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4)]
    return gpu_configs()


def gpu_configs() -> list[triton.Config]:
    """Tile sizes to try on a GPU (every tl.dot dimension >= 16).

    The list keeps tiles that compile for sm_90 without register spills in fp32 and bf16
    (two fp32 accumulators per program: gamma and beta); :func:`_prune` trims it for fp32
    before sm_90.
    """
    return [
        triton.Config({"BLOCK_C": bc, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=nw, num_stages=3)
        for bc, bn, bk, nw in ((32, 64, 32, 4), (32, 128, 32, 8), (64, 64, 32, 8))
    ]


def _prune(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Before Hopper, fp32 tiles without TF32 multiply on the FMA units, where the 8-warp tiles
    spill (ptxas, sm_80: 255 registers, 72-96 B of spills); keep the 4-warp tile there."""
    if len(configs) == 1 or kwargs.get("PRECISION") != "ieee" or named_args["x"].dtype != torch.float32:
        return configs
    if triton.runtime.driver.active.get_current_target().arch >= 90:
        return configs
    return [cfg for cfg in configs if cfg.num_warps == 4] or configs


@triton.jit
def _gemm_tile(w, fused, b64, row0, C, K, N, offs_c, offs_n, UPCAST: tl.constexpr,
               PRECISION: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr,
               BLOCK_K: tl.constexpr):
    """``W[row0 + offs_c, :] @ fused[b, :, offs_n]`` -> fp32 [BLOCK_C, BLOCK_N] (rows < C)."""
    acc = tl.zeros((BLOCK_C, BLOCK_N), dtype=tl.float32)
    cmask = offs_c < C
    nmask = offs_n < N
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        kmask = offs_k < K
        a = tl.load(w + (row0 + offs_c)[:, None] * K + offs_k[None, :],
                    mask=cmask[:, None] & kmask[None, :], other=0.0)
        f = tl.load(fused + (b64 * K + offs_k[:, None]) * N + offs_n[None, :],
                    mask=kmask[:, None] & nmask[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            f = f.to(tl.float32)
        acc = tl.dot(a, f, acc, input_precision=PRECISION)
    return acc


@triton.jit
def _program_tile(C, N, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr):
    n_nb = tl.cdiv(N, BLOCK_N)
    pid = tl.program_id(0)
    b64 = (pid // n_nb).to(tl.int64)
    offs_n = (pid % n_nb) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (offs_c < C)[:, None] & (offs_n < N)[None, :]
    xy_off = (b64 * C + offs_c[:, None]) * N + offs_n[None, :]
    return b64, offs_c, offs_n, mask, xy_off


@triton.autotune(configs=_configs(), key=["C", "K", "N"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _saf_fwd(x, fused, w, bias, out, C, K, N, HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr,
             PRECISION: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_K: tl.constexpr):
    b64, offs_c, offs_n, mask, xy_off = _program_tile(C, N, BLOCK_C, BLOCK_N)
    gamma = _gemm_tile(w, fused, b64, 0, C, K, N, offs_c, offs_n, UPCAST, PRECISION,
                       BLOCK_C, BLOCK_N, BLOCK_K)
    beta = _gemm_tile(w, fused, b64, C, C, K, N, offs_c, offs_n, UPCAST, PRECISION,
                      BLOCK_C, BLOCK_N, BLOCK_K)
    if HAS_BIAS:
        cmask = offs_c < C
        gamma += tl.load(bias + offs_c, mask=cmask, other=0.0).to(tl.float32)[:, None]
        beta += tl.load(bias + C + offs_c, mask=cmask, other=0.0).to(tl.float32)[:, None]
    xv = tl.load(x + xy_off, mask=mask, other=0.0).to(tl.float32)
    tl.store(out + xy_off, (xv * (1.0 + gamma) + beta).to(out.dtype.element_ty), mask=mask)


@triton.autotune(configs=_configs(), key=["C", "K", "N"], prune_configs_by={"early_config_prune": _prune})
@triton.jit
def _saf_bwd(grad_out, x, fused, w, bias, gx, ggamma, C, K, N,
             HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr, NEED_X: tl.constexpr,
             NEED_GAMMA: tl.constexpr, PRECISION: tl.constexpr,
             BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """gx = g * (1 + gamma) in x's dtype; ggamma = g * x in fp32 (both [B, C, N])."""
    b64, offs_c, offs_n, mask, xy_off = _program_tile(C, N, BLOCK_C, BLOCK_N)
    g = tl.load(grad_out + xy_off, mask=mask, other=0.0).to(tl.float32)
    if NEED_X:
        gamma = _gemm_tile(w, fused, b64, 0, C, K, N, offs_c, offs_n, UPCAST, PRECISION,
                           BLOCK_C, BLOCK_N, BLOCK_K)
        if HAS_BIAS:
            gamma += tl.load(bias + offs_c, mask=offs_c < C, other=0.0).to(tl.float32)[:, None]
        tl.store(gx + xy_off, (g * (1.0 + gamma)).to(gx.dtype.element_ty), mask=mask)
    if NEED_GAMMA:
        xv = tl.load(x + xy_off, mask=mask, other=0.0).to(tl.float32)
        tl.store(ggamma + xy_off, g * xv, mask=mask)


def _upcast(x: torch.Tensor) -> bool:
    """Whether to feed tl.dot fp32: the interpreter multiplies bfloat16 bit patterns as integers
    (triton-lang/triton#11584), so bf16 tiles are upcast there; compiled GPU code never is."""
    return _INTERPRET and x.dtype == torch.bfloat16


def tf32_allowed() -> bool:
    """Whether PyTorch's own fp32 CUDA matmuls may use TF32.

    Reads the ``fp32_precision`` settings (torch >= 2.9) first: the legacy ``allow_tf32`` and
    ``get_float32_matmul_precision`` raise once a program has set the new API.
    """
    for scope in (torch.backends.cuda.matmul, torch.backends):
        precision = getattr(scope, "fp32_precision", "none")
        if precision != "none":
            return precision == "tf32"
    try:
        return torch.get_float32_matmul_precision() != "highest"
    except RuntimeError:  # legacy and new settings mixed: keep full precision
        return False


def _precision(x: torch.Tensor) -> str:
    """fp32 tl.dot precision: TF32 only where PyTorch's own fp32 matmuls may use it."""
    tf32 = x.dtype == torch.float32 and x.is_cuda and tf32_allowed()
    return "tf32" if tf32 else "ieee"  # half inputs ignore this


def _grid(B: int, C: int, N: int):
    return lambda meta: (B * triton.cdiv(N, meta["BLOCK_N"]), triton.cdiv(C, meta["BLOCK_C"]))


def saf_forward(x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
    """x [B,C,T,H,W], fused [B,K,T,H,W], weight [2C,K], bias [2C] or None; one dtype throughout."""
    B, C = x.shape[:2]
    K = fused.shape[1]
    N = x[0, 0].numel()
    x, fused, weight = x.contiguous(), fused.contiguous(), weight.contiguous()
    bias_arg = bias.contiguous() if bias is not None else weight
    out = torch.empty_like(x)
    _saf_fwd[_grid(B, C, N)](x, fused, weight, bias_arg, out, C, K, N, HAS_BIAS=bias is not None,
                              UPCAST=_upcast(x), PRECISION=_precision(x))
    return out


def saf_backward(grad_out: torch.Tensor, x: torch.Tensor, fused: torch.Tensor,
                 weight: torch.Tensor, bias: torch.Tensor | None,
                 needs: tuple[bool, bool, bool, bool]) -> tuple[torch.Tensor | None, ...]:
    """Gradients for (x, fused, weight, bias), each in its input's dtype, None where not needed."""
    B, C = x.shape[:2]
    K = fused.shape[1]
    N = x[0, 0].numel()
    need_x, need_fused, need_w, need_b = needs
    need_b = need_b and bias is not None
    need_style = need_fused or need_w or need_b
    if not (need_x or need_style):
        return None, None, None, None
    x, fused, weight = x.contiguous(), fused.contiguous(), weight.contiguous()
    grad_out = grad_out.contiguous()
    bias_arg = bias.contiguous() if bias is not None else weight
    gx = torch.empty_like(x) if need_x else grad_out
    f32 = dict(device=x.device, dtype=torch.float32)
    ggamma = torch.empty((B, C, N), **f32) if need_style else grad_out
    _saf_bwd[_grid(B, C, N)](grad_out, x, fused, weight, bias_arg, gx, ggamma, C, K, N,
                             HAS_BIAS=bias is not None, UPCAST=_upcast(x), NEED_X=need_x,
                             NEED_GAMMA=need_style, PRECISION=_precision(x))
    grads_x = gx if need_x else None
    if not need_style:
        return grads_x, None, None, None
    dstyle = torch.cat([ggamma, grad_out.reshape(B, C, N).float()], dim=1)  # [B, 2C, N]
    g_fused = g_w = g_b = None
    if need_fused:
        g_fused = torch.matmul(weight.float().t(), dstyle).to(fused.dtype).reshape(fused.shape)
    if need_w:
        g_w = torch.einsum("bon,bkn->ok", dstyle, fused.reshape(B, K, N).float()).to(weight.dtype)
    if need_b:
        g_b = dstyle.sum(dim=(0, 2)).to(bias.dtype)
    return grads_x, g_fused, g_w, g_b


def saf_grad_x(grad_out: torch.Tensor, fused: torch.Tensor, weight_gamma: torch.Tensor,
               bias_gamma: torch.Tensor | None) -> torch.Tensor:
    """``grad_out * (1 + gamma)`` with gamma = weight_gamma [C, K] @ fused (+ bias_gamma): the
    gradient wrt x (the other SAF gradients are GEMMs, dnerv_fast.ops.reference)."""
    B, C = grad_out.shape[:2]
    K = fused.shape[1]
    N = grad_out[0, 0].numel()
    grad_out, fused, weight_gamma = grad_out.contiguous(), fused.contiguous(), weight_gamma.contiguous()
    bias_arg = bias_gamma.contiguous() if bias_gamma is not None else weight_gamma
    gx = torch.empty_like(grad_out)
    _saf_bwd[_grid(B, C, N)](grad_out, grad_out, fused, weight_gamma, bias_arg, gx, grad_out, C, K, N,
                             HAS_BIAS=bias_gamma is not None, UPCAST=_upcast(grad_out), NEED_X=True,
                             NEED_GAMMA=False, PRECISION=_precision(grad_out))
    return gx
