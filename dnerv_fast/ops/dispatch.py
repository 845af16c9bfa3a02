"""The public fused ops, each one ``torch.library`` custom op, eager and compiled alike.

``flow_warp(...)`` checks its arguments and calls the custom op ``dnerv_fast::flow_warp``;
the op's implementation asks the registry which kernel runs the call
(:func:`dnerv_fast.ops.registry.kernel`: the backend in force, its capabilities, the
reference otherwise) and runs it. Its registered autograd saves the inputs and the backend's
name; the backward op ``dnerv_fast::flow_warp_backward`` runs that backend's backward kernel.
Fake implementations give ``torch.compile`` the result's shape and memory format, so Dynamo
traces a model through the ops without graph breaks and the backend is chosen when the
compiled graph runs, as in eager mode.

``block_conv3x3`` and ``conv_head`` have kernels without a backward pass (decoding): while an
autograd graph is being built they run their reference directly, whose plain torch ops
autograd differentiates.

A launch that fails with one of the backend's ``LAUNCH_ERRORS`` (a Triton compile error, say)
marks that backend failed with one warning and reruns on the next one
(:func:`dnerv_fast.ops.registry.launch_failed`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from . import reference, registry
from .validation import check_flow_warp, check_saf_modulate, check_upsample_tail

OPS = registry.OPS

# Schema arguments of each op (without the keyword-only flags).
_ARGS = {
    "flow_warp": "Tensor start, Tensor end, Tensor flow, Tensor t",
    "saf_modulate": "Tensor x, Tensor fused, Tensor weight, Tensor? bias",
    "upsample_tail": "Tensor y, Tensor? conv_bias, int scale, Tensor tfc_weight, Tensor? tfc_bias",
    "block_conv3x3": "Tensor x, Tensor weight",
    "conv_head": "Tensor[] parts, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2",
}
# Keyword-only flags: saf_modulate's ``decoding`` (no autograd graph is built: the cpu kernel
# may then write large maps channels-last, for the conv that follows).
_FLAGS = {"saf_modulate": ", *, bool decoding=False"}


def _building_graph(*args) -> bool:
    if not torch.is_grad_enabled():
        return False
    for a in args:
        if isinstance(a, torch.Tensor) and a.requires_grad:
            return True
        if isinstance(a, (list, tuple)) and any(x.requires_grad for x in a):
            return True
    return False


# --- the public ops ------------------------------------------------------------------------

def flow_warp(start: torch.Tensor, end: torch.Tensor, flow: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    """``(1-t) * warp(start, flow[:, :2]) + t * warp(end, flow[:, 2:])`` -> [B, C, T, H, W].

    start, end: [B, C, H, W]; flow: [B, 4, T, H, W] in pixels; t: [B, T].
    Bilinear, border padding, align_corners=True (grid_sample semantics).
    """
    check_flow_warp(start, end, flow, t)
    return _OVERLOADS["flow_warp"](start, end, flow, t)


def saf_modulate(x: torch.Tensor, fused: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x * (1 + gamma) + beta`` where [gamma; beta] = 1x1 conv of ``fused``.

    x: [B, C, T, H, W]; fused: [B, K, T, H, W]; weight: [2C, K] (a [2C, K, 1, 1, 1] conv
    weight is accepted); bias: [2C] or None. The result may be in channels_last_3d memory
    format (the ``cpu`` kernel writes large maps so when no autograd graph is built, for the
    conv that follows); its values do not depend on the layout.
    """
    if isinstance(weight, torch.Tensor) and weight.dim() > 2:
        weight = weight.reshape(weight.shape[0], -1)
    check_saf_modulate(x, fused, weight, bias)
    return _OVERLOADS["saf_modulate"](x, fused, weight, bias,
                                      decoding=not _building_graph(x, fused, weight, bias))


def upsample_tail(y: torch.Tensor, conv_bias: torch.Tensor | None, scale: int,
                  tfc_weight: torch.Tensor, tfc_bias: torch.Tensor | None = None) -> torch.Tensor:
    """+bias, PixelShuffle(scale), exact GELU, then GTMLP with residual -> [B, C, T, H*s, W*s].

    y: [B, C*s*s, T, H, W] (output of the bias-free 3x3 conv; the ``cpu`` kernel reads a
    channels_last_3d y in place, the others copy it); tfc_weight: [C*T, T] (a
    [C*T, T, 1, 1] Conv2d weight is accepted); tfc_bias: [C*T] or None.
    """
    if isinstance(tfc_weight, torch.Tensor) and tfc_weight.dim() > 2:
        tfc_weight = tfc_weight.reshape(tfc_weight.shape[0], -1)
    check_upsample_tail(y, conv_bias, scale, tfc_weight, tfc_bias)
    return _OVERLOADS["upsample_tail"](y, conv_bias, scale, tfc_weight, tfc_bias)


def block_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A decoder block's bias-free 3x3 conv (stride 1, pad 1, per frame) of x [B, C, T, H, W]
    by weight [O, C, 1, 3, 3]. The ``cpu`` kernel (Winograd F(4x4, 3x3), decoding only)
    returns channels_last_3d, which upsample_tail reads in place."""
    if _building_graph(x, weight):
        return reference.block_conv3x3(x, weight)
    return _OVERLOADS["block_conv3x3"](x, weight)


def conv_head(parts: Sequence[torch.Tensor], w1: torch.Tensor, b1: torch.Tensor | None,
              w2: torch.Tensor, b2: torch.Tensor | None) -> torch.Tensor:
    """The flow / RGB head of ``torch.cat(parts, 1)`` (see :func:`reference.conv_head`): 1x1
    conv, GELU, 3x3 conv; the concatenation is never built. The ``cpu`` kernel (decoding
    only) keeps three hidden rows per thread instead of the full hidden map."""
    if _building_graph(*parts, w1, b1, w2, b2):
        return reference.conv_head(parts, w1, b1, w2, b2)
    return _OVERLOADS["conv_head"](list(parts), w1, b1, w2, b2)


def pinned(backend: str) -> tuple[Callable[..., torch.Tensor], ...]:
    """``flow_warp, saf_modulate, upsample_tail`` run with backend ``backend`` in force (a
    backend module's entry points, for tests and benchmarks that name a backend)."""
    def make(op: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def run(*args):
            with registry.use_backend(backend):
                return op(*args)
        run.__name__ = run.__qualname__ = op.__name__
        run.__doc__ = f"{op.__name__} on the {backend} backend (see dnerv_fast.ops.{op.__name__})."
        return run
    return tuple(make(op) for op in (flow_warp, saf_modulate, upsample_tail))


# --- the custom ops ------------------------------------------------------------------------

def _after_launch_failure(op: str, phase: str, args: Sequence, call: Callable, name: str,
                          exc: BaseException):
    """``call(kernel)`` on the backend that takes over from ``name``, which failed to launch
    (and again, should that one fail too)."""
    nxt = registry.launch_failed(name, registry.first_device(args), op, exc)
    name, kernel = registry.kernel(op, phase, args, backend=nxt)
    try:
        return call(kernel)
    except registry.launch_errors(name) as again:
        return _after_launch_failure(op, phase, args, call, name, again)


def _backward(op: str, grad: torch.Tensor, args: Sequence, needs: Sequence[bool],
              backend: str) -> list[torch.Tensor]:
    """Gradients of the needed differentiable arguments, contiguous, in their dtypes."""
    slots = OPS[op]
    needs = tuple(bool(n) and args[i] is not None for n, i in zip(needs, slots))
    name, kernel = registry.kernel(op, "backward", args, backend=backend)
    try:
        grads = kernel(grad, *args, needs)
    except registry.launch_errors(name) as exc:
        grads = _after_launch_failure(op, "backward", args, lambda k: k(grad, *args, needs), name, exc)
    out = []
    for g, need, i in zip(grads, needs, slots):
        if need:
            g = g.to(args[i].dtype).contiguous()
            out.append(g.clone() if g is grad else g)  # a custom op may not return its input
    return out


def _fake(op: str, args: Sequence, flags: dict) -> torch.Tensor:
    """The result's shape and memory format without running a kernel (``torch.compile``)."""
    name = registry.choose(op, args)
    like = getattr(reference, op)(*args)
    if name == "reference":
        return like
    output_format = getattr(registry.load_backend(name), "output_format", None)
    fmt = output_format(op, args, flags) if output_format else torch.contiguous_format
    return torch.empty(like.shape, dtype=like.dtype, device=like.device, memory_format=fmt)


def _register(op: str) -> Callable:
    def impl(*args, **flags):
        name, kernel = registry.kernel(op, "forward", args)  # the backend's <op>_forward
        try:
            return kernel(*args, **flags)
        except registry.launch_errors(name) as exc:
            return _after_launch_failure(op, "forward", args, lambda k: k(*args, **flags), name, exc)

    fwd = torch.library.custom_op(f"dnerv_fast::{op}", impl, mutates_args=(),
                                  schema=f"({_ARGS[op]}{_FLAGS.get(op, '')}) -> Tensor")
    fwd.register_fake(lambda *args, **flags: _fake(op, args, flags))
    slots = OPS[op]
    if not slots:
        return getattr(torch.ops.dnerv_fast, op).default

    def backward_impl(grad, *args):
        *op_args, needs, backend = args
        return _backward(op, grad, op_args, needs, backend)

    def backward_fake(grad, *args):
        *op_args, needs, _ = args
        return [op_args[i].new_empty(op_args[i].shape)
                for need, i in zip(needs, slots) if need and op_args[i] is not None]

    bwd = torch.library.custom_op(f"dnerv_fast::{op}_backward", backward_impl, mutates_args=(),
                                  schema=f"(Tensor grad, {_ARGS[op]}, bool[] needs, str backend) -> Tensor[]")
    bwd.register_fake(backward_fake)
    backward_op = getattr(torch.ops.dnerv_fast, f"{op}_backward").default

    def setup_context(ctx, inputs, output):
        ctx.backend = registry.resolved_name(registry.first_device(inputs))
        ctx.constants = {i: a for i, a in enumerate(inputs) if not isinstance(a, torch.Tensor)}
        ctx.save_for_backward(*(a for a in inputs if isinstance(a, torch.Tensor)))

    def autograd_backward(ctx, grad):
        tensors = iter(ctx.saved_tensors)
        args = [ctx.constants[i] if i in ctx.constants else next(tensors)
                for i in range(len(ctx.saved_tensors) + len(ctx.constants))]
        needs = [bool(ctx.needs_input_grad[i]) and args[i] is not None for i in slots]
        if registry.choose(op, args, backend=ctx.backend) == "reference":
            # Autograd through the reference: here, because inside a custom op's
            # implementation the ops below record no autograd graph.
            got = iter(_backward(op, grad, args, needs, "reference"))
        else:
            got = iter(backward_op(grad, *args, needs, ctx.backend))
        grads = {i: next(got) for need, i in zip(needs, slots) if need}
        return tuple(grads.get(i) for i in range(len(args)))

    if op in _FLAGS:
        fwd.register_autograd(autograd_backward, setup_context=lambda ctx, inputs, keyword_only_inputs, output:
                              setup_context(ctx, inputs, output))
    else:
        fwd.register_autograd(autograd_backward, setup_context=setup_context)
    return getattr(torch.ops.dnerv_fast, op).default


_OVERLOADS = {op: _register(op) for op in OPS}
