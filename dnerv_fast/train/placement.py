"""Where the training data lives: resident on the device, streamed to it, or batched on the host."""
from __future__ import annotations

import torch

from dnerv_fast.clips.data import PreparedVideo
from dnerv_fast.configs import ModelConfig
from dnerv_fast.train.resident import ResidentClips, data_budget, resident_bytes
from dnerv_fast.train.streamed import StreamedClips

DATA_PATHS = ("auto", "resident", "stream", "host")


def place_data(videos: list[PreparedVideo], config: ModelConfig, device: torch.device,
               data: str, budget: int = 0) -> ResidentClips | StreamedClips | None:
    """The clips of ``videos`` on ``device`` as ``data`` says (None: ``host``, batches built
    per step). ``auto`` keeps them resident when they fit the data budget (``budget`` bytes,
    or by default half the free GPU memory; always on the CPU) and streams them otherwise."""
    if data == "host":
        return None
    if data == "auto":
        limit = data_budget(device, budget)
        data = "resident" if limit is None or resident_bytes(videos) <= limit else "stream"
    if data == "resident":
        return ResidentClips(videos, config, device, budget)
    return StreamedClips(videos, config, device, budget)
