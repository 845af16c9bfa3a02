"""What a kernel can run, as data, and the list of reasons a call is not supported.

After xformers' operator attributes (``SUPPORTED_DEVICES``, ``SUPPORTED_DTYPES``) and its
``not_supported_reasons``: every kernel (one op on one backend) declares the device types and
dtypes it takes, which arguments must share one dtype, whether it has a backward pass and the
smallest frames it is worth running on. The registry (:data:`dnerv_fast.ops.registry.BACKENDS`)
holds that data for every kernel without importing it, ``dnerv-fast backends`` prints it, and
a call that a kernel does not support runs on the reference.

Two kinds of reasons: a *limit* (an unsupported dtype, mixed dtypes, a device) is named once
in a warning, because the user asked for something the fast path cannot do; a *preference*
(no backward pass while an autograd graph is being built, frames below the size where the
kernel pays) is the normal case for some calls and stays silent.
Limits that depend on the machine (CUDA grid sizes) stay in the backend's ``limits``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def tensors_of(args: Sequence) -> list[tuple[int, torch.Tensor]]:
    """(position, tensor) of the tensor arguments; a list argument (the heads' parts) counts at
    its own position once per tensor."""
    found = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            found.append((i, a))
        elif isinstance(a, (list, tuple)):
            found.extend((i, x) for x in a if isinstance(x, torch.Tensor))
    return found


@dataclass(frozen=True)
class Capabilities:
    """``devices``: tensor device types it runs on; ``dtypes``: floating types of its
    arguments; ``one_dtype``: whether a call's tensor arguments must share one dtype, and
    ``one_dtype_args`` the positions that must, where not all of them; ``cpu_when``: an
    environment variable that, set to 1, lets it run on CPU tensors too (Triton's
    interpreter); ``backward``: whether it has a backward pass (without one it serves calls
    that build no autograd graph: decoding); ``min_frame_side``: the smallest frame height and
    width (the last two dimensions of the first argument) it takes."""

    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    one_dtype: bool = True
    one_dtype_args: tuple[int, ...] | None = None
    cpu_when: str | None = None
    backward: bool = True
    min_frame_side: int = 0
    _dtype_set: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dtype_set", frozenset(self.dtypes))

    def runs_on(self, device_type: str) -> bool:
        if device_type == "cpu" and self.cpu_when is not None:
            return os.environ.get(self.cpu_when) == "1"
        return device_type in self.devices

    def not_supported_reasons(self, args: Sequence) -> list[str]:
        """The limits this call exceeds: empty when the kernel can run it.

        Every op call asks, so the common case (one supported dtype, a device it runs on)
        returns after one pass over the arguments.
        """
        tensors = tensors_of(args)
        seen = {a.dtype for _, a in tensors}
        device = tensors[0][1].device.type
        if seen <= self._dtype_set and (len(seen) == 1 or not self.one_dtype) and device in self.devices:
            return []
        reasons = []
        if not self.runs_on(device):
            reasons.append(f"device type {device} is not supported")
        unknown = sorted({str(a.dtype) for _, a in tensors if a.dtype not in self._dtype_set})
        if unknown:
            reasons.append(f"dtype {', '.join(unknown)} is not supported")
        shared = {a.dtype for i, a in tensors if self.one_dtype_args is None or i in self.one_dtype_args}
        if self.one_dtype and len(shared) > 1:
            reasons.append("mixed dtypes " + ", ".join(sorted(map(str, shared))))
        return reasons

    def declines(self, args: Sequence, building_graph: bool) -> str | None:
        """Why the kernel leaves this call to the reference by design (silently), or None."""
        if building_graph and not self.backward:
            return "no backward pass (an autograd graph is being built)"
        if self.min_frame_side:
            first = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
            if min(first.shape[-2:]) < self.min_frame_side:
                return f"frames smaller than {self.min_frame_side} pixels a side"
        return None

    def describe(self) -> str:
        """One line for ``dnerv-fast backends``."""
        devices = ", ".join(self.devices)
        if self.cpu_when is not None:
            devices += f" (cpu with {self.cpu_when}=1)"
        dtypes = ", ".join(str(d).removeprefix("torch.") for d in self.dtypes)
        notes = ["one dtype per call"] if self.one_dtype else []
        if not self.backward:
            notes.append("no backward (decoding only)")
        if self.min_frame_side:
            notes.append(f"frames >= {self.min_frame_side} px a side")
        return "; ".join([devices, dtypes, *notes])
