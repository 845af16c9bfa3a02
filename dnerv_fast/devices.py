"""Where the network runs: ``auto``, ``cpu`` or ``cuda`` to a torch device, for training,
decoding and the dataset alike. Importing it loads no torch, so that the command line's
``--help`` can list :data:`DEVICES`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dnerv_fast.errors import CodecError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when CUDA is available, else the CPU."""
    import torch

    if name not in DEVICES:
        raise CodecError(f"unknown device '{name}'; choose one of: {', '.join(DEVICES)}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise CodecError("device='cuda' needs a CUDA build of torch and a GPU; none is available")
    if local_rank >= torch.cuda.device_count():
        raise CodecError(f"process {local_rank} on this node has no GPU of its own "
                         f"({torch.cuda.device_count()} visible); start at most that many")
    return torch.device("cuda", local_rank)
