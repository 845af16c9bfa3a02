"""Parity of every fast backend with the reference ops: one matrix over (backend, op, case,
seed, dtype, forward / backward), fed by the registry.

The backends are :data:`dnerv_fast.ops.registry.BACKENDS` (the reference is the ground
truth); each runs the dtypes its capabilities declare, among those of
:data:`op_cases.TOLERANCES`. A backend that cannot load here (no GPU, no compiler, Triton
without a GPU or ``TRITON_INTERPRET=1``, which tests/conftest.py sets before anything imports
Triton) is skipped with the registry's reason; so is a call it declines. ``forward`` runs under
``no_grad`` (the decoding path); ``backward`` builds the graph and compares the gradients too.
Seeds: the shape cases run at 0, 7 and a fresh one; every other case draws a fresh seed each
run, named in a failure (replay it with ``DNERV_TEST_SEED``).
Without a GPU the CUDA column runs the unmodified CUDA kernels on CPU tensors through the
harness in tests/cuda_harness (threads as interleaved fibers; see test_cuda_harness.py), with
the launch configurations the real launchers choose.
Backend-specific behaviour that is not parity stays in tests/test_ops_{cpu,triton,cuda}.py.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import pytest
import torch

import cuda_harness
from dnerv_fast.ops import registry
from op_cases import (SAF_SHAPES, TAIL_SHAPES, TOLERANCES, WARP_SHAPES, assert_parity,
                      channels_last, fresh_seed, moved, off_grid, op_args, reference_op,
                      reported_seed, strided)

F64, F32, F16, BF16 = torch.float64, torch.float32, torch.float16, torch.bfloat16
LAYOUTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "strided": strided, "channels_last": channels_last}


@dataclass(frozen=True)
class Case:
    """One input case of ``op``. ``seeds``: ints or ``"fresh"``; ``dtypes`` /
    ``backward_dtypes``: None for all; ``drop``: arguments passed as None (no bias);
    ``layout``: a key of LAYOUTS applied to the fast side's arguments at ``laid_out`` (None:
    all); ``wanted``: the only arguments that require a gradient."""

    op: str
    name: str
    shape: tuple[int, ...]
    seeds: tuple[int | str, ...] = ("fresh",)
    dtypes: tuple[torch.dtype, ...] | None = None
    backward_dtypes: tuple[torch.dtype, ...] | None = None
    flow_scale: float = 3.0
    drop: tuple[int, ...] = ()
    layout: str | None = None
    laid_out: tuple[int, ...] | None = None
    wanted: frozenset[int] | None = None
    forward: bool = True

    def args(self, seed: int, dtype: torch.dtype) -> list:
        kw = {"flow_scale": self.flow_scale} if self.op == "flow_warp" else {}
        args = op_args(self.op, self.shape, seed, **kw)
        if self.op == "flow_warp":
            args[2] = off_grid(args[2], dtype)
        return [None if i in self.drop else a for i, a in enumerate(args)]

    def directions(self, dtype: torch.dtype) -> list[str]:
        back = self.backward_dtypes is None or dtype in self.backward_dtypes
        return ["forward"] * self.forward + ["backward"] * back


SEEDS = (0, 7, "fresh")
CASES: list[Case] = [
    *[Case("flow_warp", f"{s}", s, SEEDS) for s in WARP_SHAPES],
    *[Case("saf_modulate", f"{s}", s, SEEDS) for s in SAF_SHAPES],
    *[Case("upsample_tail", f"{s}", s, SEEDS) for s in TAIL_SHAPES],
    # Flows of tens of pixels: almost every sample is clamped to the border.
    Case("flow_warp", "far_outside", (2, 3, 4, 6, 7), dtypes=(F64, F32), flow_scale=25.0),
    Case("flow_warp", "far_outside_strided", (2, 6, 4, 5, 7), flow_scale=12.0, layout="strided"),
    # Channels-last start / end are read in place (a channel-vectorised loop on CPU); odd sizes
    # leave partial pixel blocks. Gradients in float64 only: the t gradient sums C*H*W terms,
    # beyond the float32 tolerance at these sizes.
    *[Case("flow_warp", f"{s}_channels_last", s, backward_dtypes=(F64,), layout="channels_last",
           laid_out=(0, 1)) for s in [(2, 37, 3, 7, 9), (1, 64, 8, 16, 20), (1, 5, 2, 1, 6)]],
    # More channels than one channel group per thread, and a mid-size map.
    Case("flow_warp", "many_channels", (1, 67, 8, 16, 20), dtypes=(F32,)),
    # C above one channel tile (128) and P above one pixel tile (512), no bias.
    *[Case("saf_modulate", f"no_bias_130ch_k{k}", (1, 130, 2, 17, 19, k), dtypes=(F64, F32),
           drop=(3,)) for k in (8, 40)],
    Case("saf_modulate", "no_bias_strided", (2, 20, 3, 5, 6, 17), dtypes=(F32, BF16), drop=(3,),
         layout="strided"),
    Case("upsample_tail", "no_biases", (2, 3, 4, 3, 5, 3), dtypes=(F64, F32), drop=(1, 4)),
    # An output plane spanning several CUDA thread blocks.
    Case("upsample_tail", "no_biases_large_plane", (2, 3, 4, 13, 17, 3), dtypes=(F64, F32),
         drop=(1, 4)),
    Case("upsample_tail", "no_biases_strided", (2, 4, 8, 3, 5, 2), dtypes=(F32, F16), drop=(1, 4),
         layout="strided"),
    # y in channels_last_3d (what the 3x3 conv gives after a channels-last saf_modulate).
    # 8 frames and rows of 22 values: the CPU kernels' register-blocked temporal mix and its
    # partial lane block; the channels-last case also reads 4-pixel groups and a remainder.
    *[Case("upsample_tail", f"{s}_channels_last", s, layout="channels_last", laid_out=(0,))
      for s in [(2, 5, 3, 7, 9, 2), (1, 3, 8, 4, 5, 3), (1, 1, 2, 3, 4, 1), (1, 4, 8, 3, 11, 2)]],
    Case("upsample_tail", "eight_frames", (1, 2, 8, 3, 11, 2), dtypes=(F64, F32, BF16)),
    # Only the requested gradients are produced.
    Case("flow_warp", "partial_grad", (1, 3, 2, 4, 5), dtypes=(F32,), wanted=frozenset({2, 3}),
         forward=False),
    Case("saf_modulate", "partial_grad", (1, 3, 2, 4, 5, 6), dtypes=(F32,), wanted=frozenset({0, 2}),
         forward=False),
    Case("upsample_tail", "partial_grad", (1, 3, 2, 4, 5, 2), dtypes=(F32,), wanted=frozenset({3}),
         forward=False),
]
GRADCHECK_SHAPES = {"flow_warp": (1, 2, 3, 4, 5), "saf_modulate": (1, 3, 2, 3, 4, 5),
                    "upsample_tail": (1, 2, 3, 2, 3, 2)}
FAST_BACKENDS = [name for name in registry.BACKENDS if name != "reference"]


def _dtypes(backend: str, case: Case) -> list[torch.dtype]:
    """The dtypes of the table that both the backend's capabilities and the case take."""
    declared = registry.BACKENDS[backend].capabilities.dtypes
    return [d for d in TOLERANCES if d in declared and (case.dtypes is None or d in case.dtypes)]


def _dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _matrix() -> list:
    params = []
    for backend in FAST_BACKENDS:
        for case in CASES:
            for seed in case.seeds:
                for dtype in _dtypes(backend, case):
                    for direction in case.directions(dtype):
                        params.append(pytest.param(
                            backend, case, seed, dtype, direction,
                            id=f"{backend}-{case.op}-{case.name}-seed{seed}-{_dtype_id(dtype)}-{direction}"))
    return params


@pytest.fixture(autouse=True)
def _cuda_column_on_cpu(request):
    """Without a GPU, the ``cuda`` backend's tests run its kernels through the CUDA harness."""
    params = getattr(request.node, "callspec", None)
    if params is None or params.params.get("backend") != "cuda" or torch.cuda.is_available():
        yield
        return
    with cuda_harness.emulated_cuda_backend():
        yield


@functools.cache
def _device(backend: str) -> str | None:
    """The device type the backend's parity runs on here: a GPU where it runs there, else CPU."""
    spec = registry.BACKENDS[backend]
    if torch.cuda.is_available() and spec.runs_on("cuda"):
        return "cuda"
    return "cpu" if spec.runs_on("cpu") else None


def _loaded(backend: str) -> tuple[ModuleType, str]:
    """The backend's module and device, or a skip with the registry's reason."""
    try:
        module = registry.load_backend(backend)
    except registry.BackendUnavailable as exc:
        pytest.skip(str(exc))
    device = _device(backend)
    if device is None:
        pytest.skip(f"backend {backend!r} runs on {registry.BACKENDS[backend].capabilities.describe()}; "
                    "no such device here")
    return module, device


def _skip_unless_supported(backend: str, module: ModuleType, op: str, args: list,
                           dtype: torch.dtype, device: str) -> None:
    reasons = registry.not_supported_reasons(backend, op, moved(args, device, dtype))
    if reasons:
        pytest.skip(f"backend {backend!r} declines this call: {'; '.join(reasons)}")


def _laid_out(fn: Callable[..., torch.Tensor], case: Case) -> Callable[..., torch.Tensor]:
    if case.layout is None:
        return fn
    layout = LAYOUTS[case.layout]

    def fast(*args):
        return fn(*[layout(a) if case.laid_out is None or i in case.laid_out else a
                    for i, a in enumerate(args)])
    return fast


@pytest.mark.parametrize("backend,case,seed,dtype,direction", _matrix())
def test_parity(backend: str, case: Case, seed: int | str, dtype: torch.dtype, direction: str) -> None:
    module, device = _loaded(backend)
    seed = fresh_seed() if seed == "fresh" else seed
    args = case.args(seed, dtype)
    _skip_unless_supported(backend, module, case.op, args, dtype, device)
    with reported_seed(seed):
        assert_parity(_laid_out(getattr(module, case.op), case), reference_op(case.op, dtype), args,
                      dtype, device, backward=direction == "backward", wanted=case.wanted)


@pytest.mark.parametrize("op", list(GRADCHECK_SHAPES))
@pytest.mark.parametrize("backend", [b for b in FAST_BACKENDS
                                     if F64 in registry.BACKENDS[b].capabilities.dtypes])
def test_gradcheck(backend: str, op: str) -> None:
    """Finite differences in float64, where the backend runs float64."""
    module, device = _loaded(backend)
    seed = fresh_seed()
    args = Case(op, "gradcheck", GRADCHECK_SHAPES[op]).args(seed, F64)
    args = [a.to(device).requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    with reported_seed(seed):
        assert torch.autograd.gradcheck(getattr(module, op), args, eps=1e-6, atol=1e-6, rtol=1e-5)
