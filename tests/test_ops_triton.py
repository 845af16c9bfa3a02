"""Parity of the Triton backend with the reference (forward and backward).

Without a GPU the kernels run on CPU tensors under the Triton interpreter (conftest sets
TRITON_INTERPRET=1 before anything imports them); with one they run on CUDA tensors. As the
interpreter accepts some code the GPU compiler rejects, one test also compiles every kernel for
sm_90 (no GPU needed) by running this file as a script without the interpreter.
Seeds: two fixed ones plus a random one that is printed and shown in the test id; set
DNERV_TEST_SEED to replay a failing random seed.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import warnings

import pytest
import torch

pytest.importorskip("triton")

import dnerv_fast.ops as ops  # noqa: E402
from dnerv_fast.ops import reference  # noqa: E402
from dnerv_fast.ops import triton_backend as tb  # noqa: E402
from op_cases import (SAF_SHAPES, TAIL_SHAPES, TOLERANCES, WARP_SHAPES, assert_parity,  # noqa: E402
                      flow_warp_inputs, saf_inputs, tail_inputs)

HAS_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if HAS_CUDA else "cpu"
needs_runtime = pytest.mark.skipif(not (HAS_CUDA or INTERPRET),
                                   reason="Triton needs a GPU or TRITON_INTERPRET=1")

RANDOM_SEED = int(os.environ.get("DNERV_TEST_SEED", random.SystemRandom().randrange(1, 2**31)))
print(f"test_ops_triton random seed: {RANDOM_SEED} (replay with DNERV_TEST_SEED={RANDOM_SEED})")
SEEDS = [0, 7, RANDOM_SEED]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _off_grid(flow: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round the flow to ``dtype`` and move values that land near an integer by 0.25.

    A sample point on a pixel row/column is a kink of bilinear interpolation, where the two
    implementations may legitimately pick different one-sided flow gradients; op_cases keeps
    float64 flows off the grid, but rounding to a half type can put them back on it.
    """
    rounded = flow.to(dtype).double()
    frac = rounded - rounded.round()
    return rounded + 0.25 * (frac.abs() < 0.05)


def _strided(x: torch.Tensor) -> torch.Tensor:
    """Same values and autograd path, but a non-contiguous layout (last two dims swapped)."""
    if x.dim() < 2:
        return x
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


def _warp_inputs(shape, seed, dtype, flow_scale=3.0):
    start, end, flow, t = flow_warp_inputs(shape, seed, flow_scale)
    return [start, end, _off_grid(flow, dtype), t]


@needs_runtime
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
@pytest.mark.parametrize("shape", WARP_SHAPES, ids=str)
def test_flow_warp(shape, seed, dtype):
    inputs = _warp_inputs(shape, seed, dtype)
    assert_parity(tb.flow_warp, reference.flow_warp, inputs, dtype, DEVICE)


@needs_runtime
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_flow_warp_far_outside_and_strided(dtype):
    """Flows mostly beyond the border (clamped, zero flow gradient) on non-contiguous inputs."""
    inputs = _warp_inputs((2, 6, 4, 5, 7), 3, dtype, flow_scale=12.0)

    def fast(*xs):
        return tb.flow_warp(*map(_strided, xs))
    assert_parity(fast, reference.flow_warp, inputs, dtype, DEVICE)


@needs_runtime
def test_flow_warp_half_features_fp32_flow():
    """Flow and t keep their own dtype (coordinates are fp32 anyway); so do their gradients."""
    start, end, flow, t = _warp_inputs((1, 5, 3, 6, 7), 9, torch.float32)
    feats = [x.to(torch.bfloat16).to(DEVICE).requires_grad_() for x in (start, end)]
    coords = [x.float().to(DEVICE).requires_grad_() for x in (flow, t)]
    exact = [x.detach().float().requires_grad_() for x in feats + coords]
    out, ref = tb.flow_warp(*feats, *coords), reference.flow_warp(*exact)
    assert out.dtype == torch.bfloat16
    atol, rtol = TOLERANCES[torch.bfloat16]
    torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol)
    out.float().sum().backward()
    ref.sum().backward()
    for got, exp in zip(feats + coords, exact):
        assert got.grad.dtype == got.dtype
        torch.testing.assert_close(got.grad.float(), exp.grad, atol=4 * atol, rtol=4 * rtol)
    assert tb.unsupported("flow_warp", feats[0], feats[1].float(), *coords) is not None


@needs_runtime
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
@pytest.mark.parametrize("shape", SAF_SHAPES, ids=str)
def test_saf_modulate(shape, seed, dtype):
    assert_parity(tb.saf_modulate, reference.saf_modulate, saf_inputs(shape, seed), dtype, DEVICE)


@needs_runtime
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_saf_no_bias_strided(dtype):
    x, fused, weight, _ = saf_inputs((2, 20, 3, 5, 6, 17), 5)

    def fast(x, f, w):
        return tb.saf_modulate(_strided(x), _strided(f), _strided(w), None)

    def ref(x, f, w):
        return reference.saf_modulate(x, f, w, None)
    assert_parity(fast, ref, [x, fused, weight], dtype, DEVICE)


def _tail_fns(scale: int, strided: bool = False):
    wrap = _strided if strided else (lambda x: x)

    def fast(y, cb, w, b=None):
        return tb.upsample_tail(wrap(y), cb, scale, wrap(w), b)

    def ref(y, cb, w, b=None):
        return reference.upsample_tail(y, cb, scale, w, b)
    return fast, ref


@needs_runtime
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed={s}")
@pytest.mark.parametrize("shape", TAIL_SHAPES, ids=str)
def test_upsample_tail(shape, seed, dtype):
    inputs, scale = tail_inputs(shape, seed)
    assert_parity(*_tail_fns(scale), inputs, dtype, DEVICE)


@needs_runtime
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_upsample_tail_no_biases_strided(dtype):
    (y, _, w, _), scale = tail_inputs((2, 4, 8, 3, 5, 2), 11)
    fast, ref = _tail_fns(scale, strided=True)
    assert_parity(lambda y, w: fast(y, None, w), lambda y, w: ref(y, None, w), [y, w], dtype,
                  DEVICE)


def _grads(fn, inputs, wanted):
    xs = [x.float().to(DEVICE).requires_grad_(i in wanted) for i, x in enumerate(inputs)]
    out = fn(*xs)
    out.backward(torch.ones_like(out))
    return [x.grad for x in xs]


@needs_runtime
@pytest.mark.parametrize("op", ["flow_warp", "saf_modulate", "upsample_tail"])
def test_partial_requires_grad(op):
    """Only the requested gradients are produced, and they match the reference."""
    if op == "flow_warp":
        inputs, fast, ref, wanted = (_warp_inputs((1, 3, 2, 4, 5), 1, torch.float32),
                                     tb.flow_warp, reference.flow_warp, {2, 3})
    elif op == "saf_modulate":
        inputs, fast, ref, wanted = (saf_inputs((1, 3, 2, 4, 5, 6), 1), tb.saf_modulate,
                                     reference.saf_modulate, {0, 2})
    else:
        inputs, scale = tail_inputs((1, 3, 2, 4, 5, 2), 1)
        (fast, ref), wanted = _tail_fns(scale), {2}
    for got, exp in zip(_grads(fast, inputs, wanted), _grads(ref, inputs, wanted)):
        assert (got is None) == (exp is None)
        if got is not None:
            torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-4)


@needs_runtime
def test_use_backend_routes_public_ops_through_kernels(monkeypatch):
    from dnerv_fast.kernels import flow_warp, saf, upsample_tail
    calls = []
    for module, name in ((flow_warp, "flow_warp_forward"), (saf, "saf_forward"),
                         (upsample_tail, "tail_forward")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    warp_in = [x.float().to(DEVICE) for x in _warp_inputs((1, 3, 2, 4, 5), 2, torch.float32)]
    saf_in = [x.float().to(DEVICE) for x in saf_inputs((1, 3, 2, 4, 5, 6), 2)]
    (y, cb, w, b), scale = tail_inputs((1, 3, 2, 4, 5, 2), 2)
    tail_in = [y.float().to(DEVICE), cb.float().to(DEVICE), scale, w.float().to(DEVICE),
               b.float().to(DEVICE)]
    with ops.use_backend("triton"):
        assert ops.resolve(DEVICE)[0] == "triton"
        outs = [ops.flow_warp(*warp_in), ops.saf_modulate(*saf_in), ops.upsample_tail(*tail_in)]
    assert calls == ["flow_warp_forward", "saf_forward", "tail_forward"]
    refs = [reference.flow_warp(*warp_in), reference.saf_modulate(*saf_in),
            reference.upsample_tail(*tail_in)]
    for got, exp in zip(outs, refs):
        torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-4)


@needs_runtime
def test_float64_is_declined_to_reference():
    inputs = [x.to(DEVICE) for x in saf_inputs((1, 3, 2, 4, 5, 6), 4)]
    assert tb.unsupported("saf_modulate", *inputs) is not None
    assert tb.unsupported("saf_modulate", *[x.float() for x in inputs]) is None
    with ops.use_backend("triton"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = ops.saf_modulate(*inputs)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference.saf_modulate(*inputs))


def _kernel_specs(ptr: str) -> list[tuple[object, dict, bool]]:
    """(autotuned kernel, argument values, every config?) for a compile check.

    Tensors are given as pointer types. Sizes of 1 (T, H, W, unit strides) are included:
    Triton turns such ints into constants. To keep the check short, the size-1 variants
    compile only the first config.
    """
    from dnerv_fast.kernels import flow_warp, saf, upsample_tail
    f32 = "*fp32"
    strides = dict(zip("ssb ssc ssh ssw esb esc esh esw sfb sfc sft sfh sfw stb stt".split(),
                       (960, 20, 5, 1, 960, 20, 5, 1, 640, 160, 20, 5, 1, 8, 1)))
    warp = dict(start=ptr, end=ptr, flow=ptr, tdist=ptr, C=48, T=8, H=4, W=5, HW_KEY=32, **strides)
    warp_1 = {**warp, "T": 1, "H": 1, "W": 1}
    warp_bwd = dict(grad_out=ptr, gstart=f32, gend=f32, gflow=f32, gt=f32, NEED_START=True,
                    NEED_END=True, NEED_FLOW=True, NEED_T=True)
    saf_args = dict(x=ptr, fused=ptr, w=ptr, bias=ptr, C=40, K=64, N=1000, HAS_BIAS=True,
                    UPCAST=False, PRECISION="ieee")
    tail = dict(y=ptr, conv_bias=ptr, tfc_w=ptr, C=24, T=8, H=4, W=5, S=2, HWO_KEY=128,
                HAS_CB=True, T_PAD=8)
    tail_1 = {**tail, "T": 1, "T_PAD": 1, "H": 1, "S": 1}
    tail_bwd = dict(grad_out=ptr, gy=ptr, part_w=f32, part_b=f32, part_cb=f32, NPB_MAX=2,
                    NEED_Y=True, NEED_W=True, NEED_TB=True, NEED_CB=True)
    return [
        (flow_warp._flow_warp_fwd, {**warp, "out": ptr}, True),
        (flow_warp._flow_warp_fwd, {**warp_1, "out": ptr}, False),
        (flow_warp._flow_warp_bwd, {**warp, **warp_bwd}, True),
        (flow_warp._flow_warp_bwd, {**warp_1, **warp_bwd}, False),
        (saf._saf_fwd, {**saf_args, "out": ptr}, True),
        (saf._saf_bwd, {**saf_args, "grad_out": ptr, "gx": ptr, "ggamma": f32, "NEED_X": True,
                        "NEED_GAMMA": True}, True),
        (upsample_tail._tail_fwd, {**tail, "tfc_b": ptr, "out": ptr, "HAS_TB": True}, True),
        (upsample_tail._tail_fwd, {**tail_1, "tfc_b": ptr, "out": ptr, "HAS_TB": False}, False),
        (upsample_tail._tail_bwd, {**tail, **tail_bwd}, True),
        (upsample_tail._tail_bwd, {**tail_1, **tail_bwd}, False),
    ]


def _compile_all_for_sm90() -> None:
    """Compile the GPU configs of every kernel to cubins for an H100 (sm_90); no GPU used.

    float32 tries every config; bfloat16 (the tensor-core tl.dot path) the first of each.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    assert os.environ.get("TRITON_INTERPRET") != "1", "run without the interpreter"
    for ptr in ("*fp32", "*bf16"):
        for autotuned, args, every_config in _kernel_specs(ptr):
            jit_fn = autotuned.fn
            every_config = every_config and ptr == "*fp32"
            configs = autotuned.configs if every_config else autotuned.configs[:1]
            for cfg in configs:
                values = {**args, **cfg.kwargs}
                signature, constants = {}, {}
                for param in jit_fn.params:
                    value = values[param.name]
                    if param.is_constexpr or value == 1:
                        signature[param.name], constants[param.name] = "constexpr", value
                    else:
                        signature[param.name] = value if isinstance(value, str) else "i32"
                source = triton.compiler.ASTSource(jit_fn, signature, constants)
                options = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
                compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
                assert compiled.asm.get("cubin"), f"{jit_fn.__name__} {cfg}: no cubin"
    print("compiled all kernels for sm_90")


@pytest.mark.skipif(HAS_CUDA, reason="the GPU parity tests compile the kernels for real")
def test_kernels_compile_for_sm90():
    triton = pytest.importorskip("triton")
    if not hasattr(triton.compiler, "ASTSource"):
        pytest.skip("this Triton has no ASTSource")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


if __name__ == "__main__":
    _compile_all_for_sm90()
