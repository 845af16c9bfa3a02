"""Training checkpoints: model, optimiser, epoch and every RNG state, written atomically."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnerv_fast.codec.atomic import atomic_path
from dnerv_fast.codec.errors import CheckpointError


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, epoch: int, fingerprint: dict[str, Any],
                    sampler: torch.Generator, history: list[dict[str, float]]) -> None:
    """Save after ``epoch`` epochs are complete (replaces any previous checkpoint)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "fingerprint": fingerprint, "rng": rng_state(), "sampler": sampler.get_state(),
             "history": history}
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint made by a run with the same ``fingerprint`` (settings and data)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no checkpoint to resume from at '{p}'")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for damaged files
        raise CheckpointError(f"cannot read checkpoint '{p}': {e}") from e
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise CheckpointError(f"'{p}' is not a dnerv_fast training checkpoint")
    if state["fingerprint"] != fingerprint:
        diff = sorted(k for k in set(fingerprint) | set(state["fingerprint"])
                      if fingerprint.get(k) != state["fingerprint"].get(k))
        raise CheckpointError(f"checkpoint '{p}' was made with different settings or data "
                              f"({', '.join(diff)}); start over without --resume")
    return state
