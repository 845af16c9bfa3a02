"""The memory a decoder needs, computed from a validated header before anything is built,
and the budget it must fit.

A .dnerv file may declare, within the format's limits, content that needs far more memory
than the machine has: a few hundred bytes of header can ask for a 16 GB frame buffer, 4096 x
4096 patches or 2^28 parameters. Reading, ``info`` and :class:`dnerv_fast.DNeRVDataset` call
:func:`check_decode_memory` right after the header is validated, so such a file is refused in
one line saying what it asks for and how to allow it, instead of failing inside an allocation
or waking the OOM killer. docs/FORMAT.md states the same formula.

The budget is ``max_memory`` when given (``--max-memory`` on the command line, a number of
bytes or a size such as ``12G``), else :data:`DEFAULT_SHARE` of the memory the system reports
available (``MemAvailable`` of /proc/meminfo, or what ``ulimit -v`` leaves the process if
that is less; where neither is known, no bound).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dnerv_fast.errors import MemoryBudgetError, UsageError

DEFAULT_SHARE = 0.75
# Bytes per parameter while the weights are decoded: the rANS symbols as int64 (8), the
# offsets as int16 (2), the dequantised float32 tensors (4) and the model's own (4), with
# room for the scales and tables (2).
WEIGHT_BYTES_PER_PARAMETER = 20
# Live float32 copies of the largest decoder feature map during one forward pass: a
# stage's input and output, its activation, and the Winograd convolution's transformed tiles.
FEATURE_COPIES = 4
# Copies of a decoded video's uint8 frames: the patch buffer, the stitched frames and the
# array handed to the writer.
FRAME_COPIES = 3
# Bytes per keyframe pixel: the uint8 RGB picture and its float32 patches.
KEYFRAME_BYTES_PER_PIXEL = 3 * (1 + 4)
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 10**3, "KIB": 2**10, "M": 2**20, "MB": 10**6,
          "MIB": 2**20, "G": 2**30, "GB": 10**9, "GIB": 2**30, "T": 2**40, "TB": 10**12,
          "TIB": 2**40}


def parse_size(value: int | float | str) -> int:
    """Bytes from a number of bytes or a size with a unit (``512M``, ``12G``, ``1.5GiB``;
    K, M, G, T are powers of 1024, KB, MB, GB, TB powers of 1000)."""
    if isinstance(value, bool):
        raise UsageError(f"a memory size must be a number of bytes or like 12G, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", str(value))
        if match is None or match.group(2).upper() not in _UNITS:
            raise UsageError(f"a memory size must be a number of bytes or like 512M, 12G, "
                             f"1.5GiB; got {value!r}")
        number, unit = float(match.group(1)), match.group(2).upper()
    size = number * _UNITS[unit]
    if not 0 < size < 2**63:
        raise UsageError(f"a memory size must be positive, got {value!r}")
    return int(size)


def _address_space_room() -> int | None:
    """Bytes the address-space limit (``ulimit -v``) leaves this process, or None."""
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return max(0, limit - int(line.split()[1]) * 1024)
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int | None:
    """Bytes the system can give without swapping (MemAvailable), and within this process's
    address-space limit, or None if unknown."""
    room = _address_space_room()
    system = _system_available()
    if room is None or system is None:
        return system if room is None else room
    return min(room, system)


def _system_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget(max_memory: int | float | str | None = None) -> tuple[int | None, str]:
    """(bytes, how they were chosen); bytes is None when there is no bound."""
    if max_memory is not None:
        size = parse_size(max_memory)
        return size, f"the budget of {gib(size)} given"
    available = available_memory()
    if available is None:
        return None, "no bound (available memory unknown)"
    size = int(available * DEFAULT_SHARE)
    return size, (f"the default budget of {gib(size)} ({DEFAULT_SHARE:.0%} of the "
                  f"{gib(available)} available)")


def gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"


@dataclass(frozen=True)
class DecodeMemory:
    """Bytes a decoder needs, by part (see docs/FORMAT.md, "Memory a decoder needs")."""

    file: int
    weights: int
    decoding_pass: int
    keyframes: int
    frames: int

    @property
    def total(self) -> int:
        return self.file + self.weights + self.decoding_pass + self.keyframes + self.frames

    def describe(self) -> str:
        parts = [("the file", self.file), ("weights", self.weights),
                 ("one decoding pass", self.decoding_pass), ("keyframes", self.keyframes),
                 ("frames", self.frames)]
        return ", ".join(f"{name} {gib(n)}" for name, n in parts if n)


def largest_feature_map(config, clips_per_pass: int) -> int:
    """Elements of the largest decoder stage output of one pass of ``clips_per_pass`` clips."""
    ph, pw = config.patch_size
    side, largest = 1, 0
    for width, stride in zip(config.stage_widths()[1:], config.strides):
        side *= stride
        largest = max(largest, width * (ph // config.total_stride * side)
                      * (pw // config.total_stride * side))
    return largest * config.clip_len * clips_per_pass


def decode_memory(header, file_bytes: int, clips_per_pass: int, *, weights: bool = True,
                  frames: int | None = None) -> DecodeMemory:
    """The memory to decode a file whose validated header is ``header``
    (:class:`dnerv_fast.codec.header.Header`) and size ``file_bytes``.

    ``weights``: the weights are decoded (``info`` without ``--tensors`` does not);
    ``frames``: frames decoded at once per video (None: a whole video at a time, what
    ``decode`` does today); 0: no frame is decoded (``info``).
    """
    config = header.config
    ph, pw = config.patch_size
    frame_bytes, key_bytes = 0, 0
    for v in header.videos:
        padded = -(-v.height // ph) * ph * -(-v.width // pw) * pw
        count = v.frames if frames is None else min(frames, v.frames)
        frame_bytes = max(frame_bytes, FRAME_COPIES * 3 * padded * count)
        keys = -(-v.frames // config.clip_len) + 1
        key_bytes = max(key_bytes, KEYFRAME_BYTES_PER_PIXEL * padded * keys)
    decoding = frames != 0
    return DecodeMemory(
        file=2 * file_bytes,
        weights=WEIGHT_BYTES_PER_PARAMETER * header.parameters if weights else 0,
        decoding_pass=(FEATURE_COPIES * 4 * largest_feature_map(config, clips_per_pass)
                       if decoding else 0),
        keyframes=key_bytes if decoding else 0,
        frames=frame_bytes if decoding else 0)


def check_decode_memory(need: DecodeMemory, max_memory: int | float | str | None,
                        source: str) -> None:
    """Refuse (:class:`MemoryBudgetError`) a decode that ``need`` says exceeds the budget."""
    budget, chosen = memory_budget(max_memory)
    if budget is None or need.total <= budget:
        return
    ask = -(-need.total // 2**30)
    raise MemoryBudgetError(
        f"{source} needs {gib(need.total)} to decode ({need.describe()}), more than "
        f"{chosen}; to allow it, pass max_memory='{ask}G'")
