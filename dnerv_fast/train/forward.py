"""Run the network on a :class:`~dnerv_fast.train.data.Batch`, encoding each keyframe once."""
from __future__ import annotations

import torch

from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.train.data import Batch


def run_batch(model: DNeRV, batch: Batch) -> torch.Tensor:
    """Frames [B, 3, T, ph, pw] in [0, 1] for every clip of ``batch``.

    The distinct keyframes of the batch go through the content encoder once (as a batch of
    one-frame videos); each clip then picks its start/end features by row.
    """
    device = next(model.parameters()).device
    keys = model.normalize(batch.keyframes.to(device).unsqueeze(2))        # [U, 3, 1, ph, pw]
    levels = model.encode_keyframes(keys)
    start, end = batch.start.to(device), batch.end.to(device)
    pairs = [(lvl[start, :, 0], lvl[end, :, 0]) for lvl in levels]
    inputs = batch.inputs.to(device)
    return model.decode(inputs.embed_input, pairs, inputs.backward_distance)
