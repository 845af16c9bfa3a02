"""Load checkpoints written by the reference D-NeRV code (or by this package)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn as nn

from ..configs import ModelConfig, get_config
from ..errors import CheckpointError


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape vs model shape"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        parts = []
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                            ("shape mismatch", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{title}: {shown}")
        return "; ".join(parts) or "all keys match"


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint file or dict: its 'state_dict' entry (or itself), without
    a leading 'module.' (DataParallel / DDP) on the keys."""
    if isinstance(source, (str, os.PathLike)):
        try:
            source = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {os.fspath(source)!r}: {exc}") from exc
    if not isinstance(source, Mapping):
        raise CheckpointError(f"a checkpoint must be a dict, got {type(source).__name__}")
    state = source.get("state_dict", source)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("the checkpoint has no state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_config(state: Mapping[str, torch.Tensor], base: str | ModelConfig = "uvg-M") -> ModelConfig:
    """The configuration a reference state_dict was trained with: the widths (fc_dim, stem
    hidden, encoder) and clip length are read off the weights; strides, patch size, floor
    width and normalisation come from ``base``."""
    config = base if isinstance(base, ModelConfig) else get_config(base)
    try:
        encoder_dim = state["encoder.head.0.weight"].shape[0]
        fc_dim = state["decoder_list.0.to_style.conv.weight"].shape[0] // 2 - encoder_dim
        stem_dim = state["stem.mlp.0.weight"].shape[0]
        clip_len = state["decoder_list.0.tfc.weight"].shape[1]
    except KeyError as exc:
        raise CheckpointError(f"not a D-NeRV state_dict: no {exc.args[0]}") from exc
    try:
        return dataclasses.replace(config, fc_dim=int(fc_dim), stem_dim=int(stem_dim),
                                   encoder_dim=int(encoder_dim), clip_len=int(clip_len),
                                   name="checkpoint")
    except ValueError as exc:
        raise CheckpointError(f"the checkpoint's shapes give no valid configuration: {exc}") from exc


def load_state_dict(model: nn.Module, source: str | os.PathLike | Mapping[str, Any],
                    strict: bool = True) -> LoadReport:
    """Load reference weights into ``model``; with ``strict`` any mismatch raises
    :class:`CheckpointError` naming the keys, and the model is left untouched."""
    state = read_state_dict(source)
    own = model.state_dict()
    report = LoadReport(
        missing=sorted(set(own) - set(state)),
        unexpected=sorted(set(state) - set(own)),
        mismatched=sorted(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                          for k in set(own) & set(state) if state[k].shape != own[k].shape),
    )
    if strict and not report.ok:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__}"
                              f"({getattr(model, 'config', '')}): {report}")
    model.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
    return report
