"""Run the network on a :class:`~dnerv_fast.clips.data.Batch`, encoding each keyframe once."""
from __future__ import annotations

import torch
import torch.nn as nn

from dnerv_fast.model.dnerv import DNeRV
from dnerv_fast.clips.data import Batch


class ClipDecoder(nn.Module):
    """:meth:`DNeRV.decode_clips` on a batch's keyframes in [0, 1], as a module's forward.

    DistributedDataParallel synchronises gradients only for work done in the forward of the
    module it wraps, so training wraps this module rather than calling the model's methods.
    """

    def __init__(self, model: DNeRV) -> None:
        super().__init__()
        self.model = model

    def forward(self, keyframes: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                embed_input: torch.Tensor, backward_distance: torch.Tensor) -> torch.Tensor:
        keys = self.model.normalize(keyframes.unsqueeze(2)).squeeze(2)     # [U, 3, ph, pw]
        return self.model.decode_clips(embed_input, keys, start, end, backward_distance)


class FrameIndexDecoder(nn.Module):
    """A network of the frame index alone (the NeRV baseline), behind :class:`ClipDecoder`'s
    forward so that the same trainer fits it: keyframes and distances are ignored.

    Trained on one video made of all videos end to end, the index is the global one over
    every video that the paper's NeRV baseline takes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, keyframes: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                embed_input: torch.Tensor, backward_distance: torch.Tensor) -> torch.Tensor:
        return self.model(embed_input)


def run_batch(model: DNeRV | nn.Module, batch: Batch) -> torch.Tensor:
    """Frames [B, 3, T, ph, pw] in [0, 1] for every clip of ``batch``.

    ``model`` is a :class:`DNeRV`, or a :class:`ClipDecoder` (possibly wrapped for
    data-parallel training); inputs go to its device and floating-point type. The distinct
    keyframes of the batch go through the content encoder once; each clip then picks its
    start/end features by row.
    """
    net = ClipDecoder(model) if isinstance(model, DNeRV) else model
    weight = next(net.parameters())
    device, dtype = weight.device, weight.dtype
    inputs = batch.inputs.to(device)
    return net(batch.keyframes.to(device, dtype), batch.start.to(device), batch.end.to(device),
               inputs.embed_input.to(dtype), inputs.backward_distance.to(dtype))
