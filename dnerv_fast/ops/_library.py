"""How a fused op call reaches a backend: eagerly, and under ``torch.compile``.

Every backend module (triton, cuda, cpu) provides plain kernels per op,
``<op>_forward(*args)`` and ``<op>_backward(grad, *args, needs)`` (gradients in the inputs'
dtypes, ``None`` where not needed; ``saf_modulate_forward`` also takes ``decoding``), plus
optionally ``limits(op, *args)`` and ``LAUNCH_ERRORS``. This module wraps them once:

* eagerly, :class:`_FusedOp` (an autograd Function) calls the kernels of the backend the
  registry resolved, with one Python layer over the kernel launch;
* under ``torch.compile`` the same kernels run inside the ``torch.library`` custom ops
  ``dnerv_fast::<op>`` and ``dnerv_fast::<op>_backward`` (fake implementations give shapes,
  the autograd registration pairs them), so Dynamo traces the model without graph breaks.
  The backend is resolved once, while tracing, and is a constant string of the graph: a
  compiled function keeps the backend that was in force when it was compiled.

At run time, in both paths, a call the backend does not support (its capabilities in the
registry, and its ``limits``: :func:`dnerv_fast.ops.registry.not_supported_reasons`) runs the
reference,
and a launch that fails with one of the backend's ``LAUNCH_ERRORS`` (a Triton compile error,
say) marks that backend failed with one warning and reruns on the next one
(:func:`dnerv_fast.ops.registry.launch_failed`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from . import reference, registry

# Positions of the differentiable arguments of each op (upsample_tail's scale is an int).
GRAD_SLOTS: dict[str, tuple[int, ...]] = {
    "flow_warp": (0, 1, 2, 3),
    "saf_modulate": (0, 1, 2, 3),
    "upsample_tail": (0, 1, 3, 4),
}

_ARGS = {
    "flow_warp": "Tensor start, Tensor end, Tensor flow, Tensor t",
    "saf_modulate": "Tensor x, Tensor fused, Tensor weight, Tensor? bias",
    "upsample_tail": "Tensor y, Tensor? conv_bias, int scale, Tensor tfc_weight, Tensor? tfc_bias",
}


def _declined(op: str, name: str, module, args: Sequence) -> bool:
    reasons = registry.not_supported_reasons(name, module, op, args)
    if reasons:
        reason = "; ".join(reasons)
        registry._warn_once(f"{name}:{op}:{reason}", f"dnerv_fast: {name} {op}: {reason}; using reference")
    return bool(reasons)


def _run(op: str, phase: str, name: str, args: Sequence, call: Callable):
    """``call(module)`` on backend ``name``, or ``None`` where the reference must run instead.

    A backend that has failed since ``name`` was chosen is replaced by the one auto picks now.
    """
    device_type = args[0].device.type
    while name != "reference":
        try:
            module = registry.load_backend(name)
        except registry.BackendUnavailable:  # failed after this call's backend was chosen
            name, failed = registry.replacement(device_type), name
            if name == failed:
                break
            continue
        if _declined(op, name, module, args):
            return None
        try:
            return call(getattr(module, f"{op}_{phase}"))
        except getattr(module, "LAUNCH_ERRORS", ()) as exc:
            name = registry.launch_failed(name, device_type, op, exc)
    return None


def forward(op: str, name: str, args: Sequence, decoding: bool = False) -> torch.Tensor:
    """Forward of ``op`` on backend ``name`` (see the module docstring for fallbacks)."""
    extra = (decoding,) if op == "saf_modulate" else ()
    out = _run(op, "forward", name, args, lambda fn: fn(*args, *extra))
    if out is None:
        with torch.no_grad():
            out = getattr(reference, op)(*args)
    return out


def backward(op: str, name: str, grad: torch.Tensor, args: Sequence,
             needs: Sequence[bool]) -> tuple[torch.Tensor | None, ...]:
    """Gradients of the GRAD_SLOTS arguments (contiguous, in their dtypes; None where not needed)."""
    needs = tuple(bool(n) and args[i] is not None for n, i in zip(needs, GRAD_SLOTS[op]))
    grads = _run(op, "backward", name, args, lambda fn: fn(grad, *args, needs))
    if grads is None:
        grads = _reference_backward(op, grad, args, needs)
    return tuple(None if g is None or not need else g.to(args[i].dtype).contiguous()
                 for g, need, i in zip(grads, needs, GRAD_SLOTS[op]))


def _reference_backward(op: str, grad: torch.Tensor, args: Sequence,
                        needs: Sequence[bool]) -> list[torch.Tensor | None]:
    leaves = list(args)
    wanted = [i for need, i in zip(needs, GRAD_SLOTS[op]) if need]
    for i in wanted:
        leaves[i] = args[i].detach().requires_grad_()
    got: dict[int, torch.Tensor] = {}
    if wanted:
        with torch.enable_grad():
            out = getattr(reference, op)(*leaves)
            got = dict(zip(wanted, torch.autograd.grad(out, [leaves[i] for i in wanted], grad)))
    # A gradient may be grad itself (an identity path); custom ops may not return an input.
    return [None if i not in got else (got[i].clone() if got[i] is grad else got[i])
            for i in GRAD_SLOTS[op]]


class _FusedOp(torch.autograd.Function):
    """Eager path: ``apply(backend name, decoding, *op args)``; one subclass per op, so
    autograd graphs name the op (``FlowWarpBackward``)."""

    op = ""

    @classmethod
    def forward(cls, ctx, name: str, decoding: bool, *args):
        ctx.name = name
        ctx.constants = {i: a for i, a in enumerate(args) if not isinstance(a, torch.Tensor)}
        ctx.save_for_backward(*(a for a in args if isinstance(a, torch.Tensor)))
        return forward(cls.op, name, args, decoding)

    @classmethod
    @once_differentiable
    def backward(cls, ctx, grad):
        args = _restore(ctx.saved_tensors, ctx.constants)
        needs = [ctx.needs_input_grad[2 + i] for i in GRAD_SLOTS[cls.op]]
        grads = dict(zip(GRAD_SLOTS[cls.op], backward(cls.op, ctx.name, grad, args, needs)))
        return (None, None, *(grads.get(i) for i in range(len(args))))


class FlowWarp(_FusedOp):
    op = "flow_warp"


class SafModulate(_FusedOp):
    op = "saf_modulate"


class UpsampleTail(_FusedOp):
    op = "upsample_tail"


_FUNCTIONS = {f.op: f for f in (FlowWarp, SafModulate, UpsampleTail)}


def _restore(tensors: Sequence[torch.Tensor], constants: dict[int, object]) -> list:
    it = iter(tensors)
    return [constants[i] if i in constants else next(it) for i in range(len(tensors) + len(constants))]


def apply(op: str, name: str, *args) -> torch.Tensor:
    """Run ``op`` through backend ``name``, with autograd where a graph is being built."""
    if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return _FUNCTIONS[op].apply(name, False, *args)
    return forward(op, name, args, decoding=True)  # no graph: the Function's ~10 us are saved


def entry_points(name: str) -> tuple[Callable[..., torch.Tensor], ...]:
    """``flow_warp, saf_modulate, upsample_tail`` of backend ``name`` (autograd-aware)."""
    def make(op: str) -> Callable[..., torch.Tensor]:
        def run(*args):
            return apply(op, name, *args)
        run.__name__ = run.__qualname__ = op
        run.__doc__ = f"{op} on the {name} backend (see dnerv_fast.ops.{op})."
        return run
    return tuple(make(op) for op in GRAD_SLOTS)


# --- torch.library registration (the compiled path) ----------------------------------------

def _register(op: str) -> None:
    def impl(*args):
        *op_args, name = args
        return forward(op, name, op_args).contiguous()

    def backward_impl(*args):
        grad, *op_args, needs, name = args
        return [g for g in backward(op, name, grad, op_args, needs) if g is not None]

    def fake(*args):
        return _output_like(op, args[:-1])

    def backward_fake(*args):
        _, *op_args, needs, _ = args
        return [op_args[i].new_empty(op_args[i].shape)
                for need, i in zip(needs, GRAD_SLOTS[op]) if need and op_args[i] is not None]

    fwd = torch.library.custom_op(f"dnerv_fast::{op}", impl, mutates_args=(),
                                  schema=f"({_ARGS[op]}, str backend) -> Tensor")
    bwd = torch.library.custom_op(f"dnerv_fast::{op}_backward", backward_impl, mutates_args=(),
                                  schema=f"(Tensor grad, {_ARGS[op]}, bool[] needs, str backend) -> Tensor[]")
    fwd.register_fake(fake)
    bwd.register_fake(backward_fake)

    def setup_context(ctx, inputs, output):
        *op_args, ctx.name = inputs
        ctx.constants = {i: a for i, a in enumerate(op_args) if not isinstance(a, torch.Tensor)}
        ctx.save_for_backward(*(a for a in op_args if isinstance(a, torch.Tensor)))

    def autograd_backward(ctx, grad):
        args = _restore(ctx.saved_tensors, ctx.constants)
        needs = [bool(ctx.needs_input_grad[i]) and args[i] is not None for i in GRAD_SLOTS[op]]
        got = iter(getattr(torch.ops.dnerv_fast, f"{op}_backward").default(grad, *args, needs, ctx.name))
        grads = {i: next(got) for need, i in zip(needs, GRAD_SLOTS[op]) if need}
        return (*(grads.get(i) for i in range(len(args))), None)

    fwd.register_autograd(autograd_backward, setup_context=setup_context)


def _output_like(op: str, args: Sequence) -> torch.Tensor:
    """An empty contiguous tensor shaped like ``op``'s output (the fake implementation)."""
    if op == "flow_warp":
        start, _, flow, _ = args
        B, C, H, W = start.shape
        return start.new_empty((B, C, flow.shape[2], H, W))
    if op == "saf_modulate":
        return args[0].new_empty(args[0].shape)
    y, _, scale = args[:3]
    B, CSS, T, H, W = y.shape
    return y.new_empty((B, CSS // (scale * scale), T, H * scale, W * scale))


for _op in GRAD_SLOTS:
    _register(_op)
_OVERLOADS = {op: getattr(torch.ops.dnerv_fast, op).default for op in GRAD_SLOTS}


@torch.compiler.assume_constant_result
def _traced_choice(device_type: str) -> str:
    """The backend name while Dynamo traces: evaluated once, a constant of the graph."""
    return registry.resolved_name(device_type)


def call(op: str, device_type: str, *args) -> torch.Tensor:
    """The public op: resolve the backend (a dict lookup), then run it with autograd."""
    if torch.compiler.is_compiling():
        name = _traced_choice(device_type)
        if name == "reference":  # traced through, so the compiler sees plain torch ops
            return getattr(reference, op)(*args)
        return _OVERLOADS[op](*args, name)
    name = registry.resolved_name(device_type)
    if torch._C._autograd._profiler_enabled():  # the range costs ~7 us, so only when profiling
        with record_function(f"dnerv_fast::{op}"):
            return _eager(op, name, args)
    return _eager(op, name, args)


def _eager(op: str, name: str, args: Sequence) -> torch.Tensor:
    if name == "reference":
        return getattr(reference, op)(*args)
    return apply(op, name, *args)

