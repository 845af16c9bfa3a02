"""Run-time choice of the backend that executes the fused ops.

A backend is a module with ``flow_warp``, ``saf_modulate`` and ``upsample_tail`` (same
signatures and autograd behaviour as :mod:`dnerv_fast.ops.reference`), an optional
``load()`` that raises :class:`BackendUnavailable` when it cannot run here (not built,
package missing, no GPU), and an optional ``limits(op, *args) -> list[str]`` for limits
that depend on the machine. What it runs (device types, dtypes, one dtype per call) is data,
its :class:`~dnerv_fast.ops.capabilities.Capabilities` in :data:`BACKENDS`; a call it does
not support (:func:`not_supported_reasons`) uses the reference.

Choice, most specific first: ``with use_backend(name)``, ``set_backend(name)``, the
environment variable ``DNERV_FAST_BACKEND``, else ``auto``. ``auto`` takes the first
backend that loads from :data:`AUTO_ORDER` for the tensors' device type, and warns once about
each one it skips because it failed to load. A backend that was asked for but cannot run
falls back to ``auto`` with one warning, never an error. So does one that loads but fails at
a launch with an error that means it cannot run here (its ``LAUNCH_ERRORS``, e.g. a Triton
compile failure): :func:`launch_failed` records it, warns once, and every later call takes
the next backend.

Cost per call: :func:`resolve` is a dict lookup once a (request, device type) pair has been
resolved; the cache is cleared whenever the outcome could change (a backend fails).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator

import torch

from .capabilities import Capabilities

ENV_VAR = "DNERV_FAST_BACKEND"


class BackendUnavailable(RuntimeError):
    """A backend cannot run on this machine (reason in the message)."""


@dataclass(frozen=True)
class BackendSpec:
    """A backend: its module (imported only when it is used) and what it runs, as data."""

    name: str
    module: str
    capabilities: Capabilities

    def runs_on(self, device_type: str) -> bool:
        return self.capabilities.runs_on(device_type)


_HALF_AND_FP32 = (torch.float32, torch.float16, torch.bfloat16)

BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec for spec in (
        BackendSpec("reference", "dnerv_fast.ops.reference",
                    Capabilities(("cpu", "cuda"), one_dtype=False)),
        BackendSpec("cuda", "dnerv_fast.ops.cuda_backend", Capabilities(("cuda",))),
        # Flow and t are read as float32 whatever their type: only the features must agree.
        # On CPU tensors only under the Triton interpreter (the tests).
        BackendSpec("triton", "dnerv_fast.ops.triton_backend",
                    Capabilities(("cuda",), _HALF_AND_FP32, one_dtype_args={"flow_warp": (0, 1)},
                                 cpu_when="TRITON_INTERPRET")),
        BackendSpec("cpu", "dnerv_fast.ops.cpu_backend", Capabilities(("cpu",))),
    )
}

# Fastest first, per device type, from benches/ measurements.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("triton", "cuda", "reference"),
    "cpu": ("cpu", "reference"),
}

_loaded: dict[str, ModuleType] = {}
_failed: dict[str, str] = {}
_warned: set[str] = set()
# (requested name, device type) -> resolved backend name; cleared when a backend fails.
_resolved: dict[tuple[str, str], str] = {}
_lock = threading.Lock()
_local = threading.local()
_global_choice: str | None = None


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def validate_name(name: str) -> str:
    """``name`` normalised (``auto`` or a key of :data:`BACKENDS`); ValueError otherwise."""
    name = name.strip().lower()
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}")
    return name


def load_backend(name: str) -> ModuleType:
    """Import (and build, where needed) a backend; raise BackendUnavailable if it cannot run."""
    module = _loaded.get(name)
    if module is not None:
        return module
    name = validate_name(name)
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if name in _failed:
            raise BackendUnavailable(_failed[name])
        try:
            module = importlib.import_module(BACKENDS[name].module)
            if hasattr(module, "load"):
                module.load()
        except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
            _failed[name] = f"backend {name!r} is unavailable: {type(exc).__name__}: {exc}"
            _resolved.clear()
            raise BackendUnavailable(_failed[name]) from exc
        _loaded[name] = module
        return module


def not_supported_reasons(name: str, module: ModuleType, op: str, args) -> list[str]:
    """Why backend ``name`` (loaded as ``module``) cannot run this call: empty when it can."""
    reasons = BACKENDS[name].capabilities.not_supported_reasons(op, args)
    limits = getattr(module, "limits", None)
    return reasons + limits(op, *args) if limits is not None and not reasons else reasons


def status() -> list[tuple[str, str, str]]:
    """(name, what it runs, ``loaded`` or why it is unavailable) of every backend, each
    loaded (built, where it must be) to find out."""
    rows = []
    for name, spec in BACKENDS.items():
        try:
            load_backend(name)
            state = "loaded"
        except BackendUnavailable as exc:
            state = str(exc).removeprefix(f"backend {name!r} is ")
        rows.append((name, spec.capabilities.describe(), state))
    return rows


def available_backends(device_type: str | None = None) -> list[str]:
    """Names of the backends that load here (optionally: that run on ``device_type``)."""
    names = []
    for name, spec in BACKENDS.items():
        if device_type is not None and not spec.runs_on(device_type):
            continue
        with contextlib.suppress(BackendUnavailable):
            load_backend(name)
            names.append(name)
    return names


def requested_backend() -> str:
    """The backend name in force for this thread: context, then set_backend, then env, then auto."""
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    if _global_choice is not None:
        return _global_choice
    env = _env_choice()
    return validate_name(env) if env else "auto"


_ENV_KEY = os.environ.encodekey(ENV_VAR)


def _env_choice() -> str | None:
    """``DNERV_FAST_BACKEND`` as ``os.environ`` holds it now, read from the encoded dict behind
    it: the mapping's own ``get`` raises and catches a KeyError when the variable is unset,
    ~1.5 us on every op call."""
    raw = os.environ._data.get(_ENV_KEY)
    return None if raw is None else os.environ.decodevalue(raw)


def set_backend(name: str | None) -> None:
    """Choose the backend process-wide (``None`` returns to the env var / auto)."""
    global _global_choice
    _global_choice = None if name is None else validate_name(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the enclosed ops through backend ``name`` (``auto`` allowed)."""
    name = validate_name(name)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def _auto(device_type: str) -> tuple[str, ModuleType]:
    """The first backend of AUTO_ORDER that loads; one that should run here but does not
    (a failed build, a missing package) is named once in a warning."""
    for name in AUTO_ORDER.get(device_type, ("reference",)):
        if not BACKENDS[name].runs_on(device_type):
            continue
        try:
            return name, load_backend(name)
        except BackendUnavailable as exc:
            _warn_once(f"auto:{name}", f"dnerv_fast: {exc}; auto uses the next backend")
    return "reference", load_backend("reference")


def resolve(device_type: str) -> tuple[str, ModuleType]:
    """The (name, module) that runs ops on tensors of ``device_type`` right now."""
    name = resolved_name(device_type)
    return name, load_backend(name)


def resolved_name(device_type: str) -> str:
    """Name of the backend in force for ``device_type`` (cached; see the module docstring)."""
    return _cached(requested_backend(), device_type)


def replacement(device_type: str) -> str:
    """What ``auto`` runs on ``device_type`` now: the stand-in for a backend that failed after
    a caller (a compiled graph, a saved autograd node) had chosen it."""
    return _cached("auto", device_type)


def _cached(name: str, device_type: str) -> str:
    key = (name, device_type)
    resolved = _resolved.get(key)
    if resolved is None:
        resolved = _resolved[key] = _resolve(name, device_type)
    return resolved


def _resolve(name: str, device_type: str) -> str:
    if name == "auto":
        return _auto(device_type)[0]
    if not BACKENDS[name].runs_on(device_type):
        _warn_once(f"{name}:{device_type}",
                   f"dnerv_fast: backend {name!r} does not run on {device_type} tensors; using auto")
        return _auto(device_type)[0]
    try:
        load_backend(name)
        return name
    except BackendUnavailable as exc:
        _warn_once(name, f"dnerv_fast: {exc}; falling back to auto")
        return _auto(device_type)[0]


def launch_failed(name: str, device_type: str, op: str, exc: BaseException) -> str:
    """Record that backend ``name`` cannot run ``op`` here (``exc``, one of its LAUNCH_ERRORS)
    and return the backend that takes over: ``auto``'s next choice for ``device_type``.

    Warns once, naming the backend and the error; from then on the backend counts as
    unavailable, for every op, so the process never retries it.
    """
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    reason = f"{type(exc).__name__}: {first_line}"
    with _lock:
        _failed.setdefault(name, f"backend {name!r} is unavailable: failed at launch: {reason}")
        _loaded.pop(name, None)
        _resolved.clear()
    _warned.update({name, f"auto:{name}"})  # already named once, here
    nxt = _auto(device_type)[0]
    warnings.warn(f"dnerv_fast: backend {name!r} failed to launch {op} ({reason}); "
                  f"using {nxt!r} from now on", RuntimeWarning, stacklevel=3)
    return nxt
