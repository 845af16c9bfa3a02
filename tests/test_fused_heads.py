"""Fused CPU heads (dnerv_fast/csrc/heads.h) and the vectorised erf / GELU (cpu_gelu.h).

Heads: against the plain PyTorch head in float64 (reference_head), fp32 tolerance
atol = rtol = 1e-5 (measured: below 1.1e-6 absolute on unit-scale data up to C = 426, like
the eager fp32 head's 4.6e-7). The kernel is forward only (decoding); with autograd, half
types or another backend the model keeps its eager head, tested here too.

erf: every 61st float bit pattern with |x| in [1e-30, 6] (about 28 million values), both
signs, plus 0, +-inf, large values and NaN, against float64 erf: at most 2 ulp of the
float32 result and 1.2e-7 absolute (glibc's erff: 1 ulp, 6e-8).
"""
from __future__ import annotations

import math

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dnerv_fast import ops
from dnerv_fast.model.layers import Head
from dnerv_fast.ops import cpu_backend, reference, registry

pytestmark = pytest.mark.skipif("cpu" not in ops.available_backends("cpu"), reason="CPU extension not built here")


def _extension():
    return cpu_backend.extension("cpu")


def _takes_kernel(parts, squeeze, spatial) -> bool:
    """Whether the registry gives this head call to the cpu kernel."""
    args = (list(parts), squeeze.weight, squeeze.bias, spatial.weight, spatial.bias)
    return registry.choose("conv_head", args, ops.dispatch._building_graph(*parts, squeeze.weight)) == "cpu"


def _head_weights(g: torch.Generator, c: int, hidden: int, out: int, bias: bool):
    w1 = torch.randn(hidden, c, 1, 1, 1, generator=g) / c ** 0.5
    w2 = torch.randn(out, hidden, 1, 3, 3, generator=g) / (3 * hidden ** 0.5)
    b1 = torch.randn(hidden, generator=g) if bias else None
    b2 = torch.randn(out, generator=g) if bias else None
    return w1, b1, w2, b2


@pytest.mark.parametrize("dims", [(1, 1, 1, 1, 1), (2, 3, 3, 7, 5), (1, 2, 5, 33, 17), (1, 3, 9, 40, 35),
                                  (2, 1, 16, 20, 70)])
@pytest.mark.parametrize("out", [3, 4])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_head_matches_reference(dims, out, split, bias):
    B, T, H, W, C = dims
    g = torch.Generator().manual_seed(hash((dims, out, split, bias)) % 2**31)
    hidden = max(1, C // 4)
    c0 = C - min(3, C - 1) if split and C > 1 else C
    parts = (torch.randn(B, c0, T, H, W, generator=g),)
    if c0 < C:
        parts += (torch.randn(B, C - c0, T, H, W, generator=g),)
    w1, b1, w2, b2 = _head_weights(g, C, hidden, out, bias)
    y = cpu_backend.conv_head_forward(parts, w1, b1, w2, b2)
    d = lambda t: t.double() if t is not None else None  # noqa: E731
    ref = reference.conv_head(tuple(p.double() for p in parts), d(w1), d(b1), d(w2), d(b2))
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)


def _module_inputs(seed: int, c: int, extra: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, 3, 11, 13, generator=g)
    parts = (x,) if not extra else (x, torch.randn(2, extra, 3, 11, 13, generator=g))
    head = Head(c + extra, 4 if not extra else 3)
    return head, parts


@pytest.mark.parametrize("extra", [0, 3])
def test_head_module_decodes_with_the_kernel_and_trains_eagerly(extra):
    head, parts = _module_inputs(11 + extra, 20, extra)
    squeeze, _, spatial = head.conv
    with ops.use_backend("cpu"), torch.no_grad():
        fast = head(*parts)
        eager = spatial(F.gelu(squeeze.pointwise(*parts)))
    torch.testing.assert_close(fast, eager, atol=1e-5, rtol=1e-5)
    with ops.use_backend("cpu"):                       # autograd graph: the eager head
        assert not _takes_kernel(parts, squeeze, spatial)
        loss = head(*parts).square().sum()
    loss.backward()
    assert squeeze.weight.grad is not None and spatial.weight.grad is not None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_use_the_eager_head(dtype):
    head, parts = _module_inputs(5, 12, 0)
    head = head.to(dtype)
    parts = tuple(p.to(dtype) for p in parts)
    squeeze, _, spatial = head.conv
    with ops.use_backend("cpu"), torch.no_grad():
        assert not _takes_kernel(parts, squeeze, spatial)
        assert head(*parts).dtype == dtype


def test_failed_extension_uses_the_eager_head_with_one_warning(monkeypatch):
    for name in ("_loaded", "_failed", "_resolved"):
        monkeypatch.setattr(registry, name, {})
    monkeypatch.setattr(registry, "_warned", set())

    def broken():
        raise OSError("cannot build")

    monkeypatch.setattr("dnerv_fast.ops._jit.cpu_extension", broken)
    head, parts = _module_inputs(2, 16, 0)
    with ops.use_backend("cpu"), torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = head(*parts), head(*parts)
    assert sum("unavailable" in str(c.message) for c in caught) == 1
    squeeze, _, spatial = head.conv
    torch.testing.assert_close(first, spatial(F.gelu(squeeze.pointwise(*parts))).detach())
    torch.testing.assert_close(second, first)


def _float_sweep(step: int) -> torch.Tensor:
    bits = np.arange(0x0D000000, 0x40C00001, step, dtype=np.int64).astype(np.int32)  # 1e-30 .. 6
    pos = bits.view(np.float32)
    special = np.array([0.0, 10.0, 100.0, 1e30, np.inf], np.float32)
    return torch.from_numpy(np.concatenate([pos, -pos, special, -special]))


def test_vectorised_erf_is_within_two_ulp():
    ext = _extension()
    x = _float_sweep(61)
    y = ext.simd_erf(x).double()
    ref = torch.special.erf(x.double())
    ulp = torch.from_numpy(np.spacing(np.abs(ref.float().numpy()))).double()
    err = (y - ref).abs()
    assert err.max() <= 1.2e-7
    assert (err / ulp).max() <= 2.0
    assert torch.isnan(ext.simd_erf(torch.tensor([float("nan")]))).all()


def test_vectorised_gelu_grad_matches_float64():
    """GELU'(x) = Phi(x) + x phi(x) through the vectorised erf and exp (upsample_tail's backward)."""
    ext = _extension()
    x = _float_sweep(997)
    x = x[x.abs() < 1e6]
    xd = x.double()
    ref = 0.5 * (1 + torch.special.erf(xd / math.sqrt(2))) + xd * torch.exp(-0.5 * xd * xd) / math.sqrt(2 * math.pi)
    err = (ext.simd_gelu_grad(x).double() - ref).abs()
    assert err.max() <= 2.5e-7


def test_vectorised_gelu_matches_float64():
    ext = _extension()
    x = _float_sweep(997)
    x = x[x.abs() < 1e6]                              # GELU(-inf) is NaN in every definition
    ref = F.gelu(x.double())
    err = (ext.simd_gelu(x).double() - ref).abs()
    assert (err <= 1.5e-7 + 1.2e-7 * x.double().abs()).all()
