"""CPU backend: the C++ kernels of ``dnerv_fast/csrc/cpu_*.cpp`` (built on first use).

Deterministic, forward and backward: every scatter / reduction is owned by one thread and
summed in a fixed order. float16 / bfloat16 compute in float32 (saf_modulate through float32
tensors, the other ops inside the kernels). ``block_conv3x3`` (Winograd F(4x4, 3x3)) and
``conv_head`` (1x1 conv, GELU, 3x3 conv in one pass) are decoding-only float32 kernels; their
capabilities are in :data:`dnerv_fast.ops.registry.BACKENDS`.
"""
from __future__ import annotations

import weakref

import torch

from . import reference
from ._jit import extension
from .dispatch import pinned

_HALF = (torch.float16, torch.bfloat16)

# When no autograd graph is being built (decoding), saf_modulate writes frames of at least
# this many pixels channels-last (channels_last_3d, same values): the 3x3 conv that follows
# runs in its fastest layout, and upsample_tail reads that layout in place. Measured for
# UVG-M's block convs (fp32, 2 cores): 32x40 maps 78 -> 73 ms, 64x80 108 -> 86 ms, 128x160
# 179 -> 113 ms; 16x20 and smaller gain nothing. Training keeps the contiguous layout: its
# backward passes gained nothing from it.
CHANNELS_LAST_MIN_PIXELS = 1024
WINOGRAD_TILE = 4  # output tile of the block convolutions: F(4x4, 3x3) (2 selects F(2x2, 3x3))


def load() -> None:
    """Build (first use) and import the extension; raises if it cannot be built here."""
    extension("cpu")


def output_format(op: str, args, flags) -> torch.memory_format:
    """Memory format of a forward's result (see :data:`CHANNELS_LAST_MIN_PIXELS`)."""
    if op == "block_conv3x3" or (op == "saf_modulate" and _saf_channels_last(args[0], flags.get("decoding", False))):
        return torch.channels_last_3d
    return torch.contiguous_format


def _saf_channels_last(x: torch.Tensor, decoding: bool) -> bool:
    return decoding and x.shape[-2] * x.shape[-1] >= CHANNELS_LAST_MIN_PIXELS


def _opt(x: torch.Tensor | None) -> torch.Tensor | None:
    return x.contiguous() if x is not None else None


def _channels_last_only(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def flow_warp_forward(start, end, flow, t) -> torch.Tensor:
    """Channels-last start and end (the keyframe encoder's layout) are read in place."""
    if not (_channels_last_only(start) and _channels_last_only(end)):
        start, end = start.contiguous(), end.contiguous()
    return extension("cpu").flow_warp_forward(start, end, flow.contiguous(), t.contiguous())


def flow_warp_backward(grad_out, start, end, flow, t, needs):
    """Channels-last float32 start and end are read in place (their gradients come back so)."""
    if not (start.dtype == torch.float32 and _channels_last_only(start) and _channels_last_only(end)):
        start, end = start.contiguous(), end.contiguous()
    grads = extension("cpu").flow_warp_backward(grad_out.contiguous(), start, end, flow.contiguous(),
                                                t.contiguous(), need_features=needs[0] or needs[1],
                                                need_flow_t=needs[2] or needs[3])
    return [g if need else None for g, need in zip(grads, needs)]


def _saf(x, fused, weight, bias, *, with_beta: bool, channels_last: bool) -> torch.Tensor:
    """The tiled GEMM with the modulation in its epilogue; float32 / float64 only, so half
    types run through float32 tensors."""
    if x.dtype in _HALF:
        out = _saf(x.float(), fused.float(), weight.float(), bias.float() if bias is not None else None,
                   with_beta=with_beta, channels_last=channels_last)
        return out.to(x.dtype)
    return extension("cpu").saf_forward(x.contiguous(), fused.contiguous(), weight.contiguous(), _opt(bias),
                                        with_beta=with_beta, channels_last=channels_last)


def saf_modulate_forward(x, fused, weight, bias, *, decoding: bool = False) -> torch.Tensor:
    """``decoding`` (no autograd graph is built): large frames come back channels-last."""
    return _saf(x, fused, weight, bias, with_beta=True, channels_last=_saf_channels_last(x, decoding))


def saf_modulate_backward(grad_out, x, fused, weight, bias, needs):
    def grad_x(g, f, w_gamma, b_gamma):
        return _saf(g, f, w_gamma, b_gamma, with_beta=False, channels_last=False)
    return reference.saf_gradients(grad_x, grad_out, x, fused, weight, bias, needs)


def upsample_tail_forward(y, conv_bias, scale: int, tfc_weight, tfc_bias) -> torch.Tensor:
    """A channels_last_3d y (the Winograd conv's output) is read in place."""
    if not y.is_contiguous(memory_format=torch.channels_last_3d):
        y = y.contiguous()
    return extension("cpu").upsample_tail_forward(y, _opt(conv_bias), scale, tfc_weight.contiguous(),
                                                  _opt(tfc_bias))


def upsample_tail_backward(grad_out, y, conv_bias, scale: int, tfc_weight, tfc_bias, needs):
    """Recomputes GELU(PixelShuffle(y + b)) from y instead of storing it."""
    grads = extension("cpu").upsample_tail_backward(grad_out.contiguous(), y.contiguous(), _opt(conv_bias),
                                                    scale, tfc_weight.contiguous())
    return [g if need else None for g, need in zip(grads, needs)]


# --- Winograd block convolutions -----------------------------------------------------------

# id(weight tensor) -> (weak reference to it, (data_ptr, version, tile), packed weights); an
# entry goes when its tensor does (tensors cannot key a WeakKeyDictionary: == is elementwise).
_packed: dict[int, tuple[weakref.ref, tuple[int, int, int], torch.Tensor]] = {}


def transformed_weight(weight: torch.Tensor, tile: int = WINOGRAD_TILE) -> torch.Tensor:
    """Packed G g G^T of ``weight`` [C_out, C_in, (1,) 3, 3], kept per weight tensor while its
    data pointer and version counter are unchanged (an optimizer step or ``load_state_dict``
    bumps the version, so they are recomputed on next use)."""
    key = (weight.data_ptr(), weight._version, tile)
    entry = _packed.get(id(weight))
    if entry is None or entry[0]() is not weight or entry[1] != key:
        ident = id(weight)
        entry = (weakref.ref(weight, lambda _: _packed.pop(ident, None)), key,
                 extension("cpu").winograd_pack(weight.detach(), tile))
        _packed[ident] = entry
    return entry[2]


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                     tile: int = WINOGRAD_TILE) -> torch.Tensor:
    """3x3 conv, stride 1, pad 1, of every frame by Winograd F(tile x tile, 3x3), no autograd.

    x: [N, C, H, W] or [B, C, T, H, W], float32, any memory format (channels-last is read in
    place, others are copied to it); weight [C_out, C, (1,) 3, 3]. The result is channels-last.
    """
    fmt = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
    bias = bias.detach().contiguous() if bias is not None else None
    return extension("cpu").winograd_conv3x3(x.detach().contiguous(memory_format=fmt),
                                             transformed_weight(weight, tile), weight.shape[0], tile, bias)


def block_conv3x3_forward(x, weight) -> torch.Tensor:
    return winograd_conv3x3(x, weight, tile=WINOGRAD_TILE)


# --- fused flow / RGB heads ----------------------------------------------------------------

def limits(op: str, *args) -> list[str]:
    if op == "conv_head":
        parts, w2 = args[0], args[3]
        if len(parts) not in (1, 2) or w2.shape[0] not in (3, 4):
            return ["only one or two input parts and 3 or 4 outputs"]
    return []


def conv_head_forward(parts, w1, b1, w2, b2) -> torch.Tensor:
    """Three hidden rows per thread instead of the full hidden map; the RGB head's two parts
    (x and the warped RGB keyframes) are read without concatenating them."""
    x1 = parts[1].detach().contiguous() if len(parts) == 2 else None
    return extension("cpu").fused_head(parts[0].detach().contiguous(), x1, w1.detach(), _opt(b1),
                                       w2.detach(), _opt(b2))



# The public ops with this backend in force (tests and benchmarks that name a backend).
flow_warp, saf_modulate, upsample_tail = pinned("cpu")
