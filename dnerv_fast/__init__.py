"""dnerv_fast: D-NeRV neural video representation as fast, real software.

- :func:`encode`, :func:`decode`, :func:`load`, :func:`evaluate`: the codec, videos to one
  ``.dnerv`` file and back (:mod:`dnerv_fast.codec`).
- :class:`DNeRV` / :class:`NeRV`: the models (reference state_dict keys).
- :mod:`dnerv_fast.ops`: fused hot operations with run-time backends.
- :mod:`dnerv_fast.schedule`, :mod:`dnerv_fast.tiling`: clip/keyframe schedule, patches.
- :class:`DNeRVDataset`: decoded clips of a .dnerv file as a PyTorch dataset.

Names are imported on first use, so that ``import dnerv_fast`` (and ``dnerv-fast --help``)
does not load torch, PyAV or the entropy coder until something needs them.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "encode": "dnerv_fast.codec.pipeline", "decode": "dnerv_fast.codec.pipeline",
    "load": "dnerv_fast.codec.pipeline", "Encoded": "dnerv_fast.codec.pipeline",
    "evaluate": "dnerv_fast.codec.evaluate",
    "DNeRV": "dnerv_fast.model", "NeRV": "dnerv_fast.model",
    "load_state_dict": "dnerv_fast.model", "infer_config": "dnerv_fast.model",
    "CheckpointError": "dnerv_fast.model",
    "ModelConfig": "dnerv_fast.configs", "CONFIGS": "dnerv_fast.configs",
    "get_config": "dnerv_fast.configs",
    "positional_encoding": "dnerv_fast.embedding",
    "clip_inputs": "dnerv_fast.schedule", "clip_schedule": "dnerv_fast.schedule",
    "keyframe_indices": "dnerv_fast.schedule",
    "DNeRVDataset": "dnerv_fast.dataset",
}
__all__ = [*_EXPORTS, "ops", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "ops":
        return importlib.import_module("dnerv_fast.ops")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dnerv_fast' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
