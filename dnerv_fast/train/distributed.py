"""Data-parallel encoding with torch.distributed, launched by ``torchrun``.

:func:`session` joins the process group torchrun describes in the environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): NCCL with one GPU per process (``cuda:LOCAL_RANK``)
or gloo on CPU, and leaves it again at the end, also on error. Without torchrun it gives a
one-process :class:`Distributed` and every collective below is a no-op, so the same code
runs both ways. A process group that the caller already started is used and left running.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn
from dnerv_fast.progress import progress_bar

from dnerv_fast.devices import resolve_device
from dnerv_fast.errors import CodecError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` with gradients averaged over the processes after each backward."""
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share of ``items``: every world_size-th item from its rank on."""
        return list(items[self.rank::self.world_size])

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over all processes, in place."""
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str = "",
            progress: bool = False) -> list[R]:
        """``[fn(x) for x in items]``, each process computing its :meth:`shard` (``fn`` must
        be deterministic and its results picklable)."""
        indices = range(self.rank, len(items), self.world_size)
        mine = {i: fn(items[i]) for i in progress_bar(indices, desc=desc, leave=False,
                                              disable=not (progress and self.is_main))}
        if self.enabled:
            parts: list[Any] = [None] * self.world_size
            dist.all_gather_object(parts, mine)
            for part in parts:
                mine.update(part)
        return [mine[i] for i in range(len(items))]

    def on_main(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on rank 0 only (writing files) and give every process its result.

        The others wait for it; if it fails they raise a :class:`CodecError` with its
        message rather than wait forever for a process that has given up.
        """
        outcome: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                outcome[0] = (True, fn())
            except Exception as e:  # noqa: BLE001 - re-raised below, after the others are told
                error, outcome[0] = e, (False, f"{type(e).__name__}: {e}")
        if self.enabled:
            dist.broadcast_object_list(outcome, src=0)
        if error is not None:
            raise error
        ok, value = outcome[0]
        if not ok:
            raise CodecError(f"the main process failed: {value}")
        return value


def _environment_number(name: str, default: str) -> int:
    """A whole number >= 0 that torchrun sets in the environment (refused in one line)."""
    text = os.environ.get(name, default)
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise CodecError(f"{name} must be a whole number >= 0 (torchrun sets it), got {text!r}")
    return value


def _environment_size() -> int:
    return _environment_number("WORLD_SIZE", "1")


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Distributed]:
    """The processes of this run; started by torchrun when WORLD_SIZE > 1."""
    local_rank = _environment_number("LOCAL_RANK", "0")
    if dist.is_available() and dist.is_initialized():
        target = resolve_device(device, local_rank)
        yield Distributed(dist.get_rank(), dist.get_world_size(), target)
        return
    if _environment_size() == 1:
        yield Distributed(device=resolve_device(device, local_rank))
        return
    target = resolve_device(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
        dist.init_process_group("nccl", device_id=target)
    else:
        dist.init_process_group("gloo")
    try:
        yield Distributed(dist.get_rank(), dist.get_world_size(), target)
    finally:
        dist.destroy_process_group()


def is_main_process() -> bool:
    """Whether this process should print (rank 0 of a torchrun job, or not under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"
