"""Double buffering: chunk k+1 is staged and copied to the device while chunk k trains.

Two slots, each a host staging buffer and a device buffer; chunk k uses slot k % 2.
:func:`stream_chunks` orders the work, and a :class:`Transport` does it:

* ``fill`` (on a worker thread): ``stage`` gathers the chunk's rows into the slot's host
  buffer, then ``send`` starts the copy to the slot's device buffer;
* before chunk k's steps, ``acquire`` makes the compute stream wait for its copy (on the
  device: the host does not wait), and chunk k+1's fill starts;
* after chunk k's steps are queued, ``release`` marks its slot free once they have run.

Chunk k+1's fill starts only after chunk k-1, the slot's previous chunk, was released, and
chunk k's steps wait for chunk k's fill only. :class:`CudaTransport` (pinned staging, a
side stream, events) is the GPU's; :class:`HostTransport` (the staging buffer is the
"device" buffer: no copy) runs the same order on the CPU, where the tests replace it with
one that records the calls.
"""
from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

import torch

C = TypeVar("C")
SLOTS = 2
Fill = Callable[[torch.Tensor], int]     # writes a chunk into a uint8 buffer, returns its bytes


class Transport(Protocol):
    def stage(self, slot: int, fill: Fill) -> None: ...
    def send(self, slot: int) -> None: ...
    def acquire(self, slot: int) -> torch.Tensor: ...
    def release(self, slot: int) -> None: ...


def stream_chunks(chunks: Sequence[C], fills: Callable[[C], Fill], transport: Transport,
                  executor: Executor | None = None) -> Iterator[tuple[torch.Tensor, C]]:
    """Each chunk with the device buffer holding it, the next one staged meanwhile.

    ``executor`` runs the fills (default: one worker thread, so that the host gather of
    chunk k+1 overlaps the queuing of chunk k's steps).
    """
    def fill(slot: int, chunk: C) -> None:
        transport.stage(slot, fills(chunk))
        transport.send(slot)

    own = executor is None
    pool = ThreadPoolExecutor(1, thread_name_prefix="dnerv-prefetch") if own else executor
    try:
        pending = pool.submit(fill, 0, chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            pending.result()
            buffer = transport.acquire(k % SLOTS)
            if k + 1 < len(chunks):
                pending = pool.submit(fill, (k + 1) % SLOTS, chunks[k + 1])
            yield buffer, chunk
            transport.release(k % SLOTS)
    finally:
        if own:
            pool.shutdown(wait=True)


class HostTransport:
    """The CPU's transport: a chunk is gathered straight into the buffer the steps read."""

    def __init__(self, capacity: int) -> None:
        self.buffers = [torch.empty(capacity, dtype=torch.uint8) for _ in range(SLOTS)]

    def stage(self, slot: int, fill: Fill) -> None:
        fill(self.buffers[slot])

    def send(self, slot: int) -> None:
        pass

    def acquire(self, slot: int) -> torch.Tensor:
        return self.buffers[slot]

    def release(self, slot: int) -> None:
        pass


class CudaTransport:
    """Pinned staging buffers, copied to device buffers on a side stream.

    ``copied[slot]`` (side stream) tells the compute stream the chunk has arrived and the
    worker that the staging buffer was read; ``released[slot]`` (compute stream) tells the
    side stream that the steps reading the device buffer have run. Only ``stage`` waits on
    the host, for a copy that was started one chunk earlier.
    """

    def __init__(self, capacity: int, device: torch.device) -> None:
        self.device = device
        self.host = [torch.empty(capacity, dtype=torch.uint8, pin_memory=True) for _ in range(SLOTS)]
        self.buffers = [torch.empty(capacity, dtype=torch.uint8, device=device) for _ in range(SLOTS)]
        self.used = [0] * SLOTS
        self.copied = [torch.cuda.Event() for _ in range(SLOTS)]
        self.released = [torch.cuda.Event() for _ in range(SLOTS)]
        self.side = torch.cuda.Stream(device)

    def stage(self, slot: int, fill: Fill) -> None:
        self.copied[slot].synchronize()
        self.used[slot] = fill(self.host[slot])

    def send(self, slot: int) -> None:
        with torch.cuda.device(self.device), torch.cuda.stream(self.side):
            self.side.wait_event(self.released[slot])
            n = self.used[slot]
            self.buffers[slot][:n].copy_(self.host[slot][:n], non_blocking=True)
            self.copied[slot].record(self.side)

    def acquire(self, slot: int) -> torch.Tensor:
        torch.cuda.current_stream(self.device).wait_event(self.copied[slot])
        return self.buffers[slot]

    def release(self, slot: int) -> None:
        self.released[slot].record(torch.cuda.current_stream(self.device))
