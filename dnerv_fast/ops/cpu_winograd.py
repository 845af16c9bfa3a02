"""Winograd F(4x4, 3x3) block convolutions on CPU, for decoding (dnerv_fast/csrc/winograd.h).

The decoder's block convolutions (3x3, stride 1, pad 1, per frame) are most of a CPU decode,
and oneDNN already runs them at the machine's GEMM rate. Winograd F(4x4, 3x3) needs 4x
fewer multiplications; its input and output transforms cost little next to the GEMMs
wherever the maps are larger than a few tiles.

:func:`block_conv3x3` is what the model calls. It runs the Winograd kernel when

* no autograd graph is being built (decoding), on float32 CPU tensors, outside
  ``torch.compile`` and with the ``cpu`` backend in force (``reference`` stays plain PyTorch);
* the map is at least :data:`MIN_SIDE` pixels on each side (:func:`prefers_winograd`, a
  rule from ``benches/test_bench_winograd.py``: on 4x5 maps each 4x4 tile is mostly padding
  and the transformed weights, 4x the kernel's size, are read for 20 pixels per frame);
* ``DNERV_FAST_WINOGRAD`` is not ``off``;

and ``F.conv3d`` (oneDNN) otherwise. The transformed weights are computed once per weight
tensor and kept while its data pointer and version counter are unchanged (an optimizer step
or ``load_state_dict`` bumps the version, so they are recomputed on next use).
"""
from __future__ import annotations

import os
import warnings
import weakref
from types import ModuleType

import torch
import torch.nn.functional as F

TILE = 4          # output tile (F(4x4, 3x3)); 2 selects F(2x2, 3x3)
MIN_SIDE = 8      # smallest map height and width that takes the Winograd path
ENV_VAR = "DNERV_FAST_WINOGRAD"  # "off" disables the Winograd path

# id(weight tensor) -> (weak reference to it, (data_ptr, version, tile), packed weights); an
# entry goes when its tensor does (tensors cannot key a WeakKeyDictionary: == is elementwise).
_packed: dict[int, tuple[weakref.ref, tuple[int, int, int], torch.Tensor]] = {}
_extension: ModuleType | None = None
_failed = False


def extension() -> ModuleType | None:
    """The CPU extension if it has the Winograd and fused-head kernels, else None (warns once)."""
    global _extension, _failed
    if _extension is None and not _failed:
        try:
            from ._jit import cpu_extension

            ext = cpu_extension()
            ext.winograd_conv3x3, ext.fused_head  # noqa: B018 - an older build lacks them
            _extension = ext
        except Exception as exc:  # noqa: BLE001 - any failure means "use oneDNN"
            _failed = True
            warnings.warn(f"dnerv_fast: the CPU Winograd convolution and fused heads are unavailable "
                          f"({type(exc).__name__}: {exc}); using torch's convolutions", RuntimeWarning,
                          stacklevel=3)
    return _extension


def transformed_weight(weight: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """Packed G g G^T of ``weight`` [C_out, C_in, (1,) 3, 3], cached per weight tensor."""
    ext = extension()
    if ext is None:
        raise RuntimeError("the Winograd kernels are unavailable")
    key = (weight.data_ptr(), weight._version, tile)
    entry = _packed.get(id(weight))
    if entry is None or entry[0]() is not weight or entry[1] != key:
        ident = id(weight)
        entry = (weakref.ref(weight, lambda _: _packed.pop(ident, None)), key,
                 ext.winograd_pack(weight.detach(), tile))
        _packed[ident] = entry
    return entry[2]


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            tile: int = TILE) -> torch.Tensor:
    """3x3 conv, stride 1, pad 1, of every frame by Winograd F(tile x tile, 3x3), no autograd.

    x: [N, C, H, W] or [B, C, T, H, W] (the per-frame conv of a Conv3d with temporal kernel
    1), float32, any memory format (channels-last is read in place, others are copied to it).
    weight: [C_out, C, 3, 3] or [C_out, C, 1, 3, 3]. The result is channels-last
    (channels_last / channels_last_3d), the layout the kernel writes.
    """
    ext = extension()
    if ext is None:
        raise RuntimeError("the Winograd kernels are unavailable")
    fmt = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
    bias = bias.detach().contiguous() if bias is not None else None
    return ext.winograd_conv3x3(x.detach().contiguous(memory_format=fmt), transformed_weight(weight, tile),
                                weight.shape[0], tile, bias)


def reference_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """What :func:`conv3x3` computes, in plain PyTorch (oneDNN on CPU)."""
    if x.dim() == 5:
        return F.conv3d(x, weight.view(*weight.shape[:2], 1, 3, 3), bias, padding=(0, 1, 1))
    return F.conv2d(x, weight.view(*weight.shape[:2], 3, 3), bias, padding=1)


def prefers_winograd(x: torch.Tensor) -> bool:
    """The shape rule: Winograd where the frames are at least MIN_SIDE pixels each way."""
    return x.shape[-2] >= MIN_SIDE and x.shape[-1] >= MIN_SIDE


def _eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    if torch.compiler.is_compiling() or os.environ.get(ENV_VAR, "").lower() == "off":
        return False
    from . import resolve

    return resolve("cpu")[0] == "cpu" and prefers_winograd(x) and extension() is not None


def block_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A decoder block's bias-free 3x3 conv of ``x`` [B, C, T, H, W] by ``weight``
    [C_out, C, 1, 3, 3]: Winograd where :func:`_eligible` (see the module docstring), else
    ``F.conv3d``. The Winograd result is channels_last_3d (upsample_tail reads it in place)."""
    if _eligible(x, weight):
        return conv3x3(x, weight, tile=TILE)
    return F.conv3d(x, weight, None, padding=(0, 1, 1))
