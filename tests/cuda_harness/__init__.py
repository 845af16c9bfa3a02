"""The CUDA kernels of dnerv_fast/csrc, unmodified, executed on the CPU (test code only).

``cuda_harness.h`` emulates what the kernels use of the device (threads as fibers with a seeded
interleaving, shared memory, barriers, warp shuffles, atomics, launch limits); ``build.py``
compiles the kernels against it, as a torch CPU extension (with the real cuda_binding.cpp)
and as a torch-free driver, plain or under sanitizers. :func:`emulated_cuda_backend` makes the
registry's ``cuda`` backend run on CPU tensors through that extension, so the real Python
wrappers, bindings and launchers (their launch configurations) are what the tests exercise.
See docs/kernels-cuda-harness.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator

import pytest

from .build import HarnessUnavailable, build_driver, cuda_include, extension

__all__ = ["HarnessUnavailable", "build_driver", "cuda_include", "emulated_cuda_backend", "extension",
           "harness_or_skip", "REQUIRE_ENV"]

# Set to 1 (CI does) to make a harness that cannot be built a failure instead of a skip.
REQUIRE_ENV = "DNERV_FAST_REQUIRE_CUDA_HARNESS"


def harness_or_skip():
    """The harness extension, or a skip naming why it cannot be built here (a failure when
    $DNERV_FAST_REQUIRE_CUDA_HARNESS is 1)."""
    try:
        return extension()
    except HarnessUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            raise
        pytest.skip(f"cuda harness unavailable: {exc}")


@contextlib.contextmanager
def emulated_cuda_backend() -> Iterator[object]:
    """Within the block the ``cuda`` backend loads and runs on CPU tensors through the harness
    extension (at the capabilities the registry declares for it); yields the backend
    module. The registry's state is restored afterwards."""
    from dnerv_fast.ops import cuda_backend, registry

    ext = harness_or_skip()
    spec = registry.BACKENDS["cuda"]
    on_cpu = dataclasses.replace(spec, kernels={
        op: dataclasses.replace(caps, devices=(*caps.devices, "cpu"))
        for op, caps in spec.kernels.items()})
    mp = pytest.MonkeyPatch()
    try:
        mp.setitem(registry.BACKENDS, "cuda", on_cpu)
        mp.setattr(cuda_backend, "load", lambda: None)
        mp.setattr(cuda_backend, "extension", lambda kind: ext)
        _forget_cuda(registry)
        yield registry.load_backend("cuda")
    finally:
        mp.undo()
        _forget_cuda(registry)


def _forget_cuda(registry) -> None:
    registry._loaded.pop("cuda", None)
    registry._failed.pop("cuda", None)
    registry._resolved.clear()
