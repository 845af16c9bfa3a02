"""Training checkpoints: model, optimiser, epoch, every RNG state and, for fp16, the gradient
scaler's state, written atomically.

A checkpoint holds plain tensors, numbers, strings and containers only, and is read with
``torch.load(weights_only=True)``: a planted file can make resuming fail, never run code.
Its structure is checked before anything of it is used, and a checkpoint of another run
names the setting that differs.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnerv_fast.atomic import atomic_path
from dnerv_fast.errors import CheckpointError, library_error

_KEYS = {"model": dict, "optimizer": dict, "epoch": int, "fingerprint": dict, "rng": dict,
         "sampler": torch.Tensor, "history": list}


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's generator states as plain values and tensors."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, epoch: int, fingerprint: dict[str, Any],
                    sampler: torch.Generator, history: list[dict[str, float]],
                    scaler: dict[str, float | int] | None = None) -> None:
    """Save after ``epoch`` epochs are complete (replaces any previous checkpoint).

    ``scaler``: the fp16 gradient scaler's state, plain numbers (omitted without one).
    """
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "fingerprint": fingerprint, "rng": rng_state(), "sampler": sampler.get_state(),
             "history": history}
    if scaler:
        state["scaler"] = dict(scaler)
    with atomic_path(path, overwrite=True) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as e:   # torch reports a full disk as a RuntimeError
            known = library_error(e, f"saving checkpoint '{path}'")
            if known is None:
                raise
            raise known from e


def _differences(saved: Any, current: Any, where: str = "") -> list[str]:
    """Dotted names of the settings where ``saved`` and ``current`` differ, with both values."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{where}.{key}" if where else str(key)
            out += _differences(saved.get(key), current.get(key), name)
        return out
    same = saved == current if not isinstance(saved, (list, tuple)) else \
        isinstance(current, (list, tuple)) and list(map(_plain, saved)) == list(map(_plain, current))
    return [] if same else [f"{where or 'value'} ({_short(saved)} in the checkpoint, "
                            f"{_short(current)} now)"]


def _plain(value: Any) -> Any:
    """Tuples and lists compare equal after a save and load turns one into the other."""
    return list(map(_plain, value)) if isinstance(value, (list, tuple)) else value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_structure(state: Any, model: torch.nn.Module, p: Path) -> None:
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise CheckpointError(f"'{p}' is not a dnerv_fast training checkpoint")
    for key, kind in _KEYS.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"checkpoint '{p}' is damaged: '{key}' is missing or not a "
                                  f"{kind.__name__}")
    expected = model.state_dict()
    saved = state["model"]
    missing = sorted(set(expected) - set(saved))
    if missing:
        raise CheckpointError(f"checkpoint '{p}' is damaged: model tensor '{missing[0]}' is "
                              f"missing ({len(missing)} in all)")
    for name, tensor in expected.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            raise CheckpointError(f"checkpoint '{p}' is damaged: model tensor '{name}' has shape "
                                  f"{tuple(getattr(value, 'shape', ()))}, expected {tuple(tensor.shape)}")
    scaler = state.get("scaler", {})
    if not isinstance(scaler, dict) or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scaler.values()):
        raise CheckpointError(f"checkpoint '{p}' is damaged: 'scaler' is not a dict of numbers")
    if not 0 <= state["epoch"]:
        raise CheckpointError(f"checkpoint '{p}' is damaged: epoch {state['epoch']}")


def load_checkpoint(path: str | os.PathLike, fingerprint: dict[str, Any],
                    model: torch.nn.Module) -> dict[str, Any]:
    """Load a checkpoint made by a run with the same ``fingerprint`` (settings and data) for
    ``model``'s architecture; raise :class:`CheckpointError` saying what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint to resume from at '{p}'")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or code-carrying files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint '{p}' as plain tensors and values "
                              f"({reason[:200]})") from e
    _check_structure(state, model, p)
    diff = _differences(state["fingerprint"], fingerprint)
    if diff:
        shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
        raise CheckpointError(f"checkpoint '{p}' was made with other settings or data: {shown}; "
                              f"use the same settings, or start over without resume=True")
    return state
