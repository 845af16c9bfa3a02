"""What each backend can run, as data, and the list of reasons a call is not supported.

After xformers' operator attributes (``SUPPORTED_DEVICES``, ``SUPPORTED_DTYPES``) and its
``not_supported_reasons``: a backend declares the device types and dtypes it takes and which
arguments must share one dtype; the registry (:data:`dnerv_fast.ops.registry.BACKENDS`) holds
that data for every backend without importing it, ``dnerv-fast backends`` prints it, and a
call that a backend does not support runs on the reference, with the reasons in one warning.
Limits that depend on the machine (CUDA grid sizes) stay in the backend's ``limits``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Capabilities:
    """``devices``: tensor device types it runs on; ``dtypes``: floating types of its
    arguments; ``one_dtype``: whether a call's tensor arguments must share one dtype, and
    ``one_dtype_args`` the positions that must, per op, where not all of them; ``cpu_when``:
    an environment variable that, set to 1, lets it run on CPU tensors too (Triton's
    interpreter)."""

    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    one_dtype: bool = True
    one_dtype_args: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    cpu_when: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dtype_set", frozenset(self.dtypes))

    def runs_on(self, device_type: str) -> bool:
        if device_type == "cpu" and self.cpu_when is not None:
            return os.environ.get(self.cpu_when) == "1"
        return device_type in self.devices

    def not_supported_reasons(self, op: str, args: Sequence) -> list[str]:
        """Why this call cannot run on the backend: empty when it can.

        Every op call asks, so the common case (one supported dtype, a device it runs on)
        returns after one pass over the arguments.
        """
        seen = {a.dtype for a in args if isinstance(a, torch.Tensor)}
        if seen <= self._dtype_set and (len(seen) == 1 or not self.one_dtype) and \
                (args[0].device.type in self.devices or self.runs_on(args[0].device.type)):
            return []
        tensors = [(i, a) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        reasons = []
        device = tensors[0][1].device.type
        if not self.runs_on(device):
            reasons.append(f"device type {device} is not supported")
        unknown = sorted({str(a.dtype) for _, a in tensors if a.dtype not in self.dtypes})
        if unknown:
            reasons.append(f"dtype {', '.join(unknown)} is not supported")
        positions = self.one_dtype_args.get(op)
        shared = {a.dtype for i, a in tensors if positions is None or i in positions}
        if self.one_dtype and len(shared) > 1:
            reasons.append("mixed dtypes " + ", ".join(sorted(map(str, shared))))
        return reasons

    def describe(self) -> str:
        """One line for ``dnerv-fast backends``."""
        devices = ", ".join(self.devices)
        if self.cpu_when is not None:
            devices += f" (cpu with {self.cpu_when}=1)"
        dtypes = ", ".join(str(d).removeprefix("torch.") for d in self.dtypes)
        return f"{devices}; {dtypes}" + ("; one dtype per call" if self.one_dtype else "")
