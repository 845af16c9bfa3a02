"""Model weights <-> the bytes of a .dnerv weights section (format version 2).

Layout, every tensor of the model's state_dict in its order (docs/FORMAT.md gives it byte by
byte): the float32 scales and uint8 zero points of every tensor's groups (:mod:`.quantize`);
the table the model shares (:mod:`.entropy`); for every tensor its mode byte (:mod:`.modes`)
followed by its own table (``OWN``) or its packed levels (``RAW``); then one rANS stream of
the offsets q - z of every ``SHARED`` and ``OWN`` tensor. Names and shapes are not stored: the
decoder rebuilds the model from the configuration in the header and reads tensors in the
same order.

Reading is two steps: :func:`read_layout` checks every length, mode and table against the
shapes and the bit depth without decoding a symbol, and :func:`decode_layout` decodes.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from dnerv_fast.codec.entropy import (ABSENT_TABLE, Histogram, Table, decode_stream, encode_stream,
                                      read_table)
from dnerv_fast.codec.modes import Mode, choose, raw_bytes
from dnerv_fast.codec.quantize import (QuantizedTensor, check_bits, dequantize_tensor,
                                       num_groups, prune_state_dict, quantize_tensor)
from dnerv_fast.configs import ModelConfig
from dnerv_fast.errors import BitstreamError, QuantizationError
from dnerv_fast.model.dnerv import DNeRV

GROUP_BYTES = 5            # float32 scale + uint8 zero point per quantisation group
_UNPACK_CHUNK = 1 << 20    # levels unpacked at a time: bounds the bit array to 8 MiB


def quantize_state_dict(state_dict: dict[str, torch.Tensor], bits: int, prune: float = 0.0
                        ) -> OrderedDict[str, QuantizedTensor]:
    """Prune (optional) then quantise every tensor; NaN or infinite weights are refused
    (they would silently become zeros)."""
    for name, t in state_dict.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise QuantizationError(f"weight tensor '{name}' holds NaN or infinite values: "
                                    f"training diverged (try a lower learning rate)")
    pruned = prune_state_dict(state_dict, prune)
    return OrderedDict((k, quantize_tensor(t, bits)) for k, t in pruned.items())


def dequantize_state_dict(qsd: dict[str, QuantizedTensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, dequantize_tensor(q)) for k, q in qsd.items())


def model_shapes(config: ModelConfig, parameters: int) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of the network ``config`` describes, found without allocating
    its weights (on the meta device); refused unless they hold ``parameters`` values."""
    with torch.device("meta"):
        shapes = {k: tuple(t.shape) for k, t in DNeRV(config).state_dict().items()}
    if sum(math.prod(s) for s in shapes.values()) != parameters:
        raise BitstreamError("header parameter count does not match its configuration")
    return shapes


def _levels(q: QuantizedTensor) -> np.ndarray:
    """q = offset + zero point, in 0 .. 2^bits - 1."""
    return q.offsets.reshape(q.groups, -1) + q.zero_point.astype(np.int16)[:, None]


def _pack_levels(levels: np.ndarray, bits: int) -> bytes:
    """Levels at ``bits`` bits each, least significant bit first, the last byte zero-padded."""
    flat = levels.reshape(-1).astype(np.uint16)
    planes = (flat[:, None] >> np.arange(bits, dtype=np.uint16)) & 1
    return np.packbits(planes.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def _unpack_levels(data: bytes, pos: int, count: int, bits: int) -> np.ndarray:
    weights = (1 << np.arange(bits)).astype(np.int16)
    out = np.empty(count, np.int16)
    for start in range(0, count, _UNPACK_CHUNK):   # a multiple of 8 levels: whole bytes
        n = min(_UNPACK_CHUNK, count - start)
        chunk = np.frombuffer(data, np.uint8, raw_bytes(n, bits), pos + start * bits // 8)
        planes = np.unpackbits(chunk, count=n * bits, bitorder="little").reshape(n, bits)
        out[start:start + n] = planes.astype(np.int16) @ weights
    return out


def pack_weights(qsd: dict[str, QuantizedTensor]) -> bytes:
    """Serialise quantised tensors (in order) to a weights section, each tensor in its
    cheapest mode (:func:`.modes.choose`)."""
    tensors = list(qsd.values())
    bits = tensors[0].bits if tensors else 8
    parts = []
    for q in tensors:
        parts += [q.scale.astype("<f4").tobytes(), q.zero_point.astype(np.uint8).tobytes()]
    choice = choose([Histogram.of(q.offsets) for q in tensors], bits)
    parts.append(choice.shared.to_bytes() if choice.shared else ABSENT_TABLE)
    coded = []
    for q, mode, table in zip(tensors, choice.modes, choice.tables):
        parts.append(bytes([mode]))
        if mode == Mode.OWN:
            parts.append(table.to_bytes())
        if mode == Mode.RAW:
            parts.append(_pack_levels(_levels(q), bits))
        else:
            coded.append((q.offsets.astype(np.int64), table))
    parts.append(encode_stream(coded))
    return b"".join(parts)


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a weights section: its quantisation parameters and how it is stored."""

    name: str
    shape: tuple[int, ...]
    scale: np.ndarray        # float32 [groups]
    zero_point: np.ndarray   # uint8 [groups]
    mode: Mode
    table: Table | None      # the table it is coded under (shared or own); None when RAW
    raw_start: int           # offset of its packed levels in the section (RAW only)

    @property
    def parameters(self) -> int:
        return math.prod(self.shape)

    @property
    def own_table_bytes(self) -> int:
        return self.table.nbytes if self.mode == Mode.OWN else 0


@dataclass(frozen=True)
class Layout:
    """A weights section checked against the model's shapes, not yet decoded."""

    bits: int
    tensors: tuple[StoredTensor, ...]
    shared: Table | None
    stream_start: int        # offset of the rANS stream's word count
    size: int                # bytes of the section


def read_layout(data: bytes, shapes: dict[str, tuple[int, ...]], bits: int) -> Layout:
    """Check and locate every part of a weights section for tensors of ``shapes`` (in
    order) at ``bits`` bits; raises :class:`BitstreamError` before anything is decoded."""
    bits = check_bits(bits)
    limit = 2 ** bits - 1
    pos, params = 0, []
    for shape in shapes.values():
        g = num_groups(shape)
        if pos + GROUP_BYTES * g > len(data):
            raise BitstreamError("weights section is shorter than the model's scales need")
        scale = np.frombuffer(data, "<f4", g, pos).astype(np.float32)
        if not (np.isfinite(scale).all() and (scale >= 0).all()):
            raise BitstreamError("weights section holds a negative or non-finite scale")
        zero = np.frombuffer(data, np.uint8, g, pos + 4 * g).copy()
        if zero.size and int(zero.max()) > limit:
            raise BitstreamError(f"weights section holds a zero point above {limit}, the "
                                 f"largest {bits}-bit level")
        params.append((scale, zero))
        pos += GROUP_BYTES * g
    shared, pos = read_table(data, pos, -limit, limit, "shared table")
    tensors = []
    for (name, shape), (scale, zero) in zip(shapes.items(), params):
        if pos >= len(data):
            raise BitstreamError(f"weights section ends before the mode of tensor '{name}'")
        try:
            mode = Mode(data[pos])
        except ValueError:
            raise BitstreamError(f"tensor '{name}' has unknown weights mode {data[pos]}") from None
        pos += 1
        table, raw_start = shared, pos
        if mode == Mode.SHARED and shared is None:
            raise BitstreamError(f"tensor '{name}' uses the shared table, which is absent")
        if mode == Mode.OWN:
            table, pos = read_table(data, pos, -limit, limit, f"table of tensor '{name}'")
            if table is None:
                raise BitstreamError(f"the table of tensor '{name}' is empty")
        if mode == Mode.RAW:
            table, pos = None, pos + raw_bytes(math.prod(shape), bits)
            if pos > len(data):
                raise BitstreamError(f"weights section ends inside the levels of tensor '{name}'")
        tensors.append(StoredTensor(name, tuple(shape), scale, zero, mode, table, raw_start))
    return Layout(bits, tuple(tensors), shared, pos, len(data))


def decode_layout(data: bytes, layout: Layout) -> OrderedDict[str, QuantizedTensor]:
    """The quantised tensors of a section :func:`read_layout` has checked."""
    coded = [t for t in layout.tensors if t.mode != Mode.RAW]
    streams = iter(decode_stream(data, layout.stream_start,
                                 [(t.table, t.parameters) for t in coded]))
    out = OrderedDict()
    for t in layout.tensors:
        if t.mode == Mode.RAW:
            levels = _unpack_levels(data, t.raw_start, t.parameters, layout.bits)
            offsets = (levels.reshape(t.zero_point.size, -1)
                       - t.zero_point.astype(np.int16)[:, None]).reshape(-1)
        else:
            offsets = next(streams).astype(np.int16)
        out[t.name] = QuantizedTensor(t.shape, layout.bits, offsets, t.scale, t.zero_point)
    return out


def unpack_weights(data: bytes, shapes: dict[str, tuple[int, ...]], bits: int
                   ) -> OrderedDict[str, QuantizedTensor]:
    """Inverse of :func:`pack_weights` for a model whose tensors have ``shapes`` (in order)."""
    return decode_layout(data, read_layout(data, shapes, bits))
