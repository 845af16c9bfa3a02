"""The fourth fused op: the training loss's sums (pixel error and 1 - SSIM) in one pass.

``ssim_loss(out, ref, visible, power)`` returns what :class:`dnerv_fast.train.loss.LossSums`
holds: the sum of |out - ref|^power over visible values, the sum of 1 - SSIM (11x11
Gaussian window, sigma 1.5, data range 1, 'valid' positions) over windows without a hidden
pixel, and the two counts. Its plain PyTorch definition is
:func:`dnerv_fast.ops.loss_reference.ssim_loss`.

Backends (one module each): ``cpu`` (:mod:`.loss_cpu`, C++), ``triton``
(:mod:`.loss_triton`), ``cuda`` (:mod:`.loss_cuda`). The backend is chosen as for the other
ops (:mod:`dnerv_fast.ops.registry`: ``use_backend``, ``set_backend``, ``DNERV_FAST_BACKEND``,
``auto``), from :data:`LOSS_BACKENDS`; one that cannot load, or fails at its first launch
with one of its ``LAUNCH_ERRORS``, is named in one warning and the next one of ``auto``
runs (in the end the reference). A call a backend does not support (its capabilities: device,
dtypes; or a target that needs a gradient, which only the reference gives) runs the reference.

One forward and one backward pass. The forward keeps no blurred map: each backend blurs the
five statistics (x, y, xx, yy, xy) of a tile or row of windows in registers / shared memory
and feeds them straight to the SSIM formula. What the backward needs is saved, and only when
``out`` requires a gradient: the three derivative maps of the SSIM sum (with respect to the
window means of x, its second moment and the cross moment, each times the window's weight),
``[3, N*C, Ho, Wp]`` in float32 (float64 for float64 frames), Wp = Wo rounded up to 16:
12 bytes per window position (UVG-XS batch, 16 frames of 3 x 256 x 320: 45.9 MB). The
backward blurs them with the adjoint of the 'valid' blur (the blur of the zero-padded map)
and adds the pixel-error derivative.

The op is the ``torch.library`` custom op ``dnerv_fast::ssim_loss`` (with
``dnerv_fast::ssim_loss_backward``, registered autograd and fake implementations), so
``torch.compile`` traces it without a graph break.
"""
from __future__ import annotations

import functools
import importlib
import threading
from dataclasses import dataclass
from types import ModuleType

import torch

from dnerv_fast.metrics import SIGMA, _gaussian, ssim_window

from . import loss_reference, registry
from .capabilities import Capabilities

MAP_ALIGN = 16  # row stride of the saved maps: Wo rounded up to this (csrc/ssim_math.h)
_HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class LossBackend:
    """A backend of this op: its module (imported when first used) and what it runs."""

    name: str
    module: str
    capabilities: Capabilities


_HALF_AND_FP32 = (torch.float32, torch.float16, torch.bfloat16)
LOSS_BACKENDS: dict[str, LossBackend] = {
    b.name: b for b in (
        LossBackend("cpu", "dnerv_fast.ops.loss_cpu", Capabilities(("cpu",))),
        LossBackend("cuda", "dnerv_fast.ops.loss_cuda", Capabilities(("cuda",))),
        # float64 has no tensor-core dot; on CPU tensors only under the interpreter (tests).
        LossBackend("triton", "dnerv_fast.ops.loss_triton",
                    Capabilities(("cuda",), _HALF_AND_FP32, cpu_when="TRITON_INTERPRET")),
    )
}

_loaded: dict[str, ModuleType] = {}
_failed: dict[str, str] = {}
_resolved: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def load_loss_backend(name: str) -> ModuleType:
    """Import (and build) the loss backend ``name``; BackendUnavailable if it cannot run."""
    module = _loaded.get(name)
    if module is not None:
        return module
    with _lock:
        if name in _failed:
            raise registry.BackendUnavailable(_failed[name])
        try:
            module = importlib.import_module(LOSS_BACKENDS[name].module)
            if hasattr(module, "load"):
                module.load()
        except Exception as exc:
            _failed[name] = f"ssim_loss backend {name!r} is unavailable: {type(exc).__name__}: {exc}"
            _resolved.clear()
            raise registry.BackendUnavailable(_failed[name]) from exc
        _loaded[name] = module
        return module


def _candidates(requested: str, device_type: str) -> tuple[str, ...]:
    order = registry.AUTO_ORDER.get(device_type, ("reference",))
    return order if requested == "auto" else (requested, *order)


def resolved_name(device_type: str) -> str:
    """The loss backend in force for ``device_type`` (``reference`` where none loads)."""
    requested = registry.requested_backend()
    key = (requested, device_type)
    name = _resolved.get(key)
    if name is None:
        name = _resolved[key] = _resolve(requested, device_type)
    return name


def _resolve(requested: str, device_type: str) -> str:
    for name in _candidates(requested, device_type):
        if name == "reference":
            return name
        spec = LOSS_BACKENDS.get(name)
        if spec is None or not spec.capabilities.runs_on(device_type):
            continue
        try:
            load_loss_backend(name)
            return name
        except registry.BackendUnavailable as exc:
            registry._warn_once(f"ssim_loss:{name}", f"dnerv_fast: {exc}; using the next backend")
    return "reference"


def _launch_failed(name: str, exc: BaseException) -> None:
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    with _lock:
        _failed.setdefault(name, f"ssim_loss backend {name!r} failed at launch: "
                                 f"{type(exc).__name__}: {first_line}")
        _loaded.pop(name, None)
        _resolved.clear()
    registry._warn_once(f"ssim_loss:{name}", f"dnerv_fast: {_failed[name]}; using the next backend")


@functools.lru_cache(maxsize=64)
def _taps(window: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 1-D Gaussian of the reference (float32, then cast), in the kernels' accumulator type."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    return _gaussian(window, SIGMA, acc, device).contiguous()


def _opt(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


def _kernel_forward(name: str, out, ref, visible, power: int, need_grad: bool):
    """(sums [4] float64, saved maps) from backend ``name``; None if it failed at launch."""
    module = load_loss_backend(name)
    taps = _taps(ssim_window(*out.shape[-2:]), out.dtype, out.device)
    try:
        return module.forward(out.contiguous(), ref.contiguous(), _opt(visible), taps, power, need_grad)
    except getattr(module, "LAUNCH_ERRORS", ()) as exc:
        _launch_failed(name, exc)
        return None


# --- torch.library registration ------------------------------------------------------------

@torch.library.custom_op("dnerv_fast::ssim_loss", mutates_args=())
def _fused(out: torch.Tensor, ref: torch.Tensor, visible: torch.Tensor | None, power: int,
           need_grad: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums [4] float64: error, dissimilarity, visible values per channel, whole windows per
    channel; saved maps for the backward, empty without ``need_grad``)."""
    got = None
    while got is None and backend != "reference":
        got = _kernel_forward(backend, out, ref, visible, power, need_grad)
        if got is None:
            backend = resolved_name(out.device.type)
    if got is None:  # the reference stands in: its sums, and the inputs for a replayed backward
        error, dis, pixels, windows = loss_reference.ssim_loss(out, ref, visible, power)
        C = out.shape[1]
        sums = torch.stack([error.double(), dis.double(), pixels.double() / C, windows.double() / C])
        return sums, out.new_zeros(0)
    return got


@_fused.register_fake
def _(out, ref, visible, power, need_grad, backend):
    N, C, H, W = out.shape
    w = ssim_window(H, W)
    acc = torch.float64 if out.dtype == torch.float64 else torch.float32
    wp = -(-(W - w + 1) // MAP_ALIGN) * MAP_ALIGN
    shape = (3, N * C, H - w + 1, wp) if need_grad else (0,)
    return out.new_empty(4, dtype=torch.float64), out.new_empty(shape, dtype=acc)


@torch.library.custom_op("dnerv_fast::ssim_loss_backward", mutates_args=())
def _fused_backward(grad_sums: torch.Tensor, out: torch.Tensor, ref: torch.Tensor,
                    visible: torch.Tensor | None, saved: torch.Tensor, power: int,
                    backend: str) -> torch.Tensor:
    if backend != "reference" and saved.numel():
        module = load_loss_backend(backend)
        taps = _taps(ssim_window(*out.shape[-2:]), out.dtype, out.device)
        return module.backward(grad_sums.contiguous(), out.contiguous(), ref.contiguous(),
                               _opt(visible), saved, taps, power)
    # Replayed through the reference (the forward ran there, or kept no maps).
    leaf = out.detach().requires_grad_()
    with torch.enable_grad():
        error, dis, _, _ = loss_reference.ssim_loss(leaf, ref, visible, power)
        total = error * grad_sums[0].to(error.dtype) + dis * grad_sums[1].to(dis.dtype)
        (grad,) = torch.autograd.grad(total, leaf)
    return grad.to(out.dtype).contiguous()


@_fused_backward.register_fake
def _(grad_sums, out, ref, visible, saved, power, backend):
    return torch.empty_like(out)


def _setup_context(ctx, inputs, output):
    out, ref, visible, power, _, backend = inputs
    ctx.power, ctx.backend = power, backend
    ctx.save_for_backward(out, ref, visible, output[1])


def _backward(ctx, grad_sums, _grad_saved):
    out, ref, visible, saved = ctx.saved_tensors
    grad = torch.ops.dnerv_fast.ssim_loss_backward(grad_sums, out, ref, visible, saved,
                                                   ctx.power, ctx.backend)
    return grad, None, None, None, None, None


_fused.register_autograd(_backward, setup_context=_setup_context)


# --- the public op -------------------------------------------------------------------------

def _supported(name: str, out, ref, visible) -> bool:
    reasons = LOSS_BACKENDS[name].capabilities.not_supported_reasons((out, ref))
    if ref.requires_grad:
        reasons.append("a gradient with respect to the target")
    limits = getattr(load_loss_backend(name), "limits", None)
    if limits is not None:
        reasons += limits(out)
    if reasons:
        reason = "; ".join(reasons)
        registry._warn_once(f"ssim_loss:{name}:{reason}",
                            f"dnerv_fast: {name} ssim_loss: {reason}; using reference")
    return not reasons


def check_ssim_loss(out: torch.Tensor, ref: torch.Tensor, visible: torch.Tensor | None,
                    power: int) -> None:
    if out.dim() != 4 or out.shape != ref.shape:
        raise ValueError(f"ssim_loss takes frames [N, C, H, W] alike, got {tuple(out.shape)} "
                         f"and {tuple(ref.shape)}")
    if not out.is_floating_point():
        raise TypeError(f"ssim_loss takes float frames, got {out.dtype}")
    if visible is not None and (visible.dim() != 4 or visible.shape[1] != 1 or
                                visible.shape[0] != out.shape[0] or visible.shape[2:] != out.shape[2:]):
        raise ValueError(f"visible must be [N, 1, H, W] for frames {tuple(out.shape)}, "
                         f"got {tuple(visible.shape)}")
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power}")


def ssim_loss(out: torch.Tensor, ref: torch.Tensor, visible: torch.Tensor | None = None,
              power: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(error, dissimilarity, pixels, windows) of frames [N, C, H, W]: see the module docstring.

    Differentiable with respect to ``out`` (and, through the reference, ``ref``). Sums are
    in ``out``'s dtype (float32 for the half types); counts as the reference gives them.
    """
    check_ssim_loss(out, ref, visible, power)
    name = resolved_name(out.device.type)
    if visible is not None:
        visible = visible.to(out.dtype)
    if name == "reference" or not _supported(name, out, ref, visible) or 0 in out.shape:
        return loss_reference.ssim_loss(out, ref, visible, power)
    need_grad = torch.is_grad_enabled() and out.requires_grad
    sums, _ = _fused(out, ref, visible, power, need_grad, name)
    dtype = torch.float32 if out.dtype in _HALF else out.dtype
    error, dissimilarity = sums[0].to(dtype), sums[1].to(dtype)
    N, C, H, W = out.shape
    if visible is None:
        w = ssim_window(H, W)
        count = error.new_full((), float(N * C * H * W), dtype=torch.float32)
        windows = error.new_full((), float(N * C * (H - w + 1) * (W - w + 1)), dtype=torch.float32)
        return error, dissimilarity, count, windows
    counts = (sums[2:].detach() * C).to(dtype)
    return error, dissimilarity, counts[0], counts[1]
