"""Every kernel of the fused ops, as data, and the run-time choice of the one that runs a call.

A *backend* (``cpu``, ``cuda``, ``triton``, and ``reference``, plain PyTorch) is a module with,
for each op it implements, ``<op>_forward(*args, **flags)`` and, where its capabilities
declare a backward pass, ``<op>_backward(grad, *args, needs)``; plus ``load()``, which raises
when it cannot run here (not built, package missing, no GPU), and optionally
``limits(op, *args) -> list[str]`` (limits that depend on the machine), ``LAUNCH_ERRORS``
(exceptions at a launch that mean "cannot run here") and ``output_format(op, args, flags)``
(the memory format of a forward's result, for ``torch.compile``'s fake tensors).
What each kernel runs is data, a :class:`~dnerv_fast.ops.capabilities.Capabilities` per op in
:data:`BACKENDS`; the reference implements every op of :data:`OPS`.

Choice, most specific first: ``with use_backend(name)``, ``set_backend(name)``, the
environment variable ``DNERV_FAST_BACKEND``, else ``auto``. ``auto`` takes the first backend
of :data:`AUTO_ORDER` for the tensors' device type that loads, and warns once about each one
it skips because it failed to load. A name that is not a backend, a backend that cannot run
here, or one that fails at a launch with one of its ``LAUNCH_ERRORS`` falls back to ``auto``
with one warning, never an error. A choice may switch single ops' fast kernels off:
``cpu,-block_conv3x3`` runs that op on the reference (:class:`Request`).

Per call, :func:`kernel` finds the kernel: the (request, device type) -> backend step is a
dict lookup once resolved (the cache is cleared whenever the outcome could change: a backend
fails), then the kernel's capabilities are checked.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Iterator, Sequence

import torch

from .capabilities import Capabilities

ENV_VAR = "DNERV_FAST_BACKEND"


class BackendUnavailable(RuntimeError):
    """A backend cannot run on this machine (reason in the message)."""


# The ops, with the positions of their differentiable arguments (empty: decoding only).
OPS: dict[str, tuple[int, ...]] = {
    "flow_warp": (0, 1, 2, 3),
    "saf_modulate": (0, 1, 2, 3),
    "upsample_tail": (0, 1, 3, 4),
    "block_conv3x3": (),
    "conv_head": (),
}


@dataclass(frozen=True)
class BackendSpec:
    """A backend: its module (imported only when it is used) and, per op it implements, what
    that kernel runs, as data."""

    name: str
    module: str
    kernels: dict[str, Capabilities]

    def runs_on(self, device_type: str) -> bool:
        return any(caps.runs_on(device_type) for caps in self.kernels.values())

    @property
    def capabilities(self) -> Capabilities:
        """Its first kernel's capabilities, what its fused ops run (per op: ``kernels``)."""
        return next(iter(self.kernels.values()))


_HALF_AND_FP32 = (torch.float32, torch.float16, torch.bfloat16)
_ALL_DEVICES = Capabilities(("cpu", "cuda", "meta"), one_dtype=False)


def _same(ops: Sequence[str], caps: Capabilities) -> dict[str, Capabilities]:
    return {op: caps for op in ops}


_FUSED = ("flow_warp", "saf_modulate", "upsample_tail")
_CUDA = Capabilities(("cuda",))
_TRITON = Capabilities(("cuda",), _HALF_AND_FP32, cpu_when="TRITON_INTERPRET")

BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec for spec in (
        BackendSpec("reference", "dnerv_fast.ops.reference", _same(OPS, _ALL_DEVICES)),
        BackendSpec("cuda", "dnerv_fast.ops.cuda_backend", {
            **_same(_FUSED, _CUDA),
            # No tensor-core path in the SAF GEMM (see cuda_backend): half types run elsewhere.
            "saf_modulate": Capabilities(("cuda",), (torch.float32, torch.float64))}),
        BackendSpec("triton", "dnerv_fast.ops.triton_backend", {
            # Flow and t are read as float32 whatever their type: only the features must agree.
            "flow_warp": Capabilities(("cuda",), _HALF_AND_FP32, one_dtype_args=(0, 1),
                                      cpu_when="TRITON_INTERPRET"),
            "saf_modulate": _TRITON, "upsample_tail": _TRITON}),
        BackendSpec("cpu", "dnerv_fast.ops.cpu_backend", {
            **_same(_FUSED, Capabilities(("cpu",))),
            # Winograd F(4x4, 3x3): on frames under 8 pixels a side each 4x4 tile is mostly
            # padding (benches/test_bench_winograd.py); oneDNN is faster there.
            "block_conv3x3": Capabilities(("cpu",), (torch.float32,), backward=False, min_frame_side=8),
            "conv_head": Capabilities(("cpu",), (torch.float32,), backward=False)}),
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


def choices() -> str:
    return ", ".join(["auto", *BACKENDS])


def validate_name(name: str) -> str:
    """``name`` normalised (``auto`` or a key of :data:`BACKENDS`); ValueError otherwise."""
    name = name.strip().lower()
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of: {choices()}")
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


# --- which backend is asked for ------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """A backend choice: ``name`` (``auto`` or a backend) and the ops whose fast kernels are
    switched off (the reference runs them). Written ``name[,-op...]``, e.g.
    ``cpu,-block_conv3x3,-conv_head``, in ``DNERV_FAST_BACKEND``, :func:`set_backend` and
    :func:`use_backend` alike."""

    name: str
    off: frozenset[str] = frozenset()


_requests: dict[str, Request] = {}


def parse_request(text: str) -> Request:
    """``name[,-op...]`` as a :class:`Request`; ValueError naming the valid choices otherwise."""
    request = _requests.get(text)
    if request is not None:
        return request
    name, *rest = [part.strip().lower() for part in text.split(",")]
    off = set()
    for part in rest:
        if not part.startswith("-") or part[1:] not in OPS:
            raise ValueError(f"{part!r} in {text!r} is not -OP with OP one of: {', '.join(OPS)}")
        off.add(part[1:])
    request = _requests[text] = Request(validate_name(name or "auto"), frozenset(off))
    return request


_AUTO = Request("auto")


def _env_request() -> Request:
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return _AUTO
    try:
        return parse_request(raw)
    except ValueError as exc:
        _warn_once(f"env:{raw}", f"dnerv_fast: {ENV_VAR}={raw!r}: {exc}; using auto")
        _requests[raw] = _AUTO
        return _AUTO


def request() -> Request:
    """The choice in force for this thread: context, then set_backend, then env, then auto."""
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    if _global_choice is not None:
        return _global_choice
    return _env_request()


def requested_backend() -> str:
    """The backend name in force for this thread (see :func:`request`)."""
    return request().name


def set_backend(name: str | None) -> None:
    """Choose the backend process-wide (``None`` returns to the env var / auto)."""
    global _global_choice
    _global_choice = None if name is None else parse_request(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the enclosed ops through backend ``name`` (``auto`` allowed, ``-op`` switches)."""
    choice = parse_request(name)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(choice)
    try:
        yield
    finally:
        stack.pop()


# --- resolution ----------------------------------------------------------------------------

def _auto(device_type: str) -> str:
    """The first backend of AUTO_ORDER that loads; one that should run here but does not
    (a failed build, a missing package) is named once in a warning."""
    for name in AUTO_ORDER.get(device_type, ("reference",)):
        if not BACKENDS[name].runs_on(device_type):
            continue
        try:
            load_backend(name)
            return name
        except BackendUnavailable as exc:
            _warn_once(f"auto:{name}", f"dnerv_fast: {exc}; auto uses the next backend")
    return "reference"


def resolved_name(device_type: str) -> str:
    """Name of the backend in force for ``device_type`` (cached; see the module docstring)."""
    return _cached(request().name, device_type)


def resolve(device_type: str) -> tuple[str, ModuleType]:
    """The (name, module) that runs ops on tensors of ``device_type`` right now."""
    name = resolved_name(device_type)
    return name, load_backend(name)


def _cached(name: str, device_type: str) -> str:
    key = (name, device_type)
    resolved = _resolved.get(key)
    if resolved is None:
        resolved = _resolved[key] = _resolve(name, device_type)
    return resolved


def _resolve(name: str, device_type: str) -> str:
    if name == "auto":
        return _auto(device_type)
    if not BACKENDS[name].runs_on(device_type):
        _warn_once(f"{name}:{device_type}",
                   f"dnerv_fast: backend {name!r} does not run on {device_type} tensors; using auto")
        return _auto(device_type)
    try:
        load_backend(name)
        return name
    except BackendUnavailable as exc:
        _warn_once(name, f"dnerv_fast: {exc}; falling back to auto")
        _warned.add(f"auto:{name}")  # named once, here
        return _auto(device_type)


def not_supported_reasons(name: str, op: str, args: Sequence) -> list[str]:
    """Why backend ``name``'s kernel for ``op`` cannot run this call (its capabilities, then
    its ``limits``): empty when it can."""
    caps = BACKENDS[name].kernels.get(op)
    if caps is None:
        return [f"backend {name!r} has no {op} kernel"]
    reasons = caps.not_supported_reasons(args)
    if not reasons:
        limits = getattr(load_backend(name), "limits", None)
        reasons = limits(op, *args) if limits is not None else []
    return reasons


def choose(op: str, args: Sequence, building_graph: bool = False,
           backend: str | None = None) -> str:
    """The backend whose kernel runs this call of ``op``: ``backend`` (default: the one in
    force for the arguments' device) where its kernel exists, is not switched off and
    supports the call, else ``reference``. A call beyond a kernel's limits is named in one
    warning; one it declines by design (see :class:`Capabilities`) is not."""
    if backend is None:
        choice = request()
        if op in choice.off:
            return "reference"
        backend = _cached(choice.name, first_device(args))
    name = backend
    if name == "reference":
        return name
    caps = BACKENDS[name].kernels.get(op)
    if caps is None or caps.declines(args, building_graph):
        return "reference"
    reasons = not_supported_reasons(name, op, args)
    if reasons:
        reason = "; ".join(reasons)
        if caps.backward:  # a decoding-only kernel is an optional speed-up: no warning
            _warn_once(f"{name}:{op}:{reason}", f"dnerv_fast: {name} {op}: {reason}; using reference")
        return "reference"
    return name


def kernel(op: str, phase: str, args: Sequence, building_graph: bool = False,
           backend: str | None = None) -> tuple[str, Callable]:
    """(backend name, ``<op>_<phase>`` function of its module) that runs this call (:func:`choose`)."""
    name = choose(op, args, building_graph, backend)
    try:
        return name, getattr(load_backend(name), f"{op}_{phase}")
    except BackendUnavailable:  # failed after this call's backend was chosen
        return kernel(op, phase, args, building_graph, replacement(first_device(args)))


def first_device(args: Sequence) -> str:
    first = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
    return first.device.type


def replacement(device_type: str) -> str:
    """What ``auto`` runs on ``device_type`` now: the stand-in for a backend that failed after
    a caller (a saved autograd node) had chosen it."""
    return _cached("auto", device_type)


def launch_errors(name: str) -> tuple[type[BaseException], ...]:
    return getattr(_loaded.get(name), "LAUNCH_ERRORS", ())


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
    nxt = _auto(device_type)
    warnings.warn(f"dnerv_fast: backend {name!r} failed to launch {op} ({reason}); "
                  f"using {nxt!r} from now on", RuntimeWarning, stacklevel=3)
    return nxt


# --- what is there -------------------------------------------------------------------------

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
        rows.append((name, "; ".join(sorted({c.describe() for c in spec.kernels.values()})), state))
    return rows


def report(device_types: Sequence[str]) -> list[str]:
    """``dnerv-fast backends``: every backend and each of its kernels, what it runs, and
    whether it is used on each device type now (and why not)."""
    choice = request()
    lines = [f"requested: {choice.name}" + "".join(f",-{op}" for op in sorted(choice.off))
             + f" (set {ENV_VAR}=NAME[,-OP...], or use --backend where offered)"]
    chosen = {device: resolved_name(device) for device in device_types}
    for name, _, state in status():
        lines.append(f"{name:<10} {state}")
        for op, caps in BACKENDS[name].kernels.items():
            users = [d for d in device_types if chosen[d] == name and caps.runs_on(d)]
            if state != "loaded":
                why = "not used: backend unavailable"
            elif op in choice.off and name != "reference":
                why = f"not used: switched off ({ENV_VAR})"
            elif users:
                why = "used on " + ", ".join(users)
            elif name == "reference":
                why = "used for calls the chosen kernel does not take"
            else:
                why = "not used: another backend is chosen"
            lines.append(f"  {op:<14} {why}; runs {caps.describe()}")
    for device in device_types:
        lines.append(f"{device}: available {available_backends(device)}; auto picks {_cached('auto', device)!r}")
    return lines


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

