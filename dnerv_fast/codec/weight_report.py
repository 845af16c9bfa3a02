"""Bits per parameter of a weights section: in all, by storage mode, and tensor by tensor.

The section's total is exact. Per tensor, the scales, zero points, own table and packed
levels are exact bytes; the share of the one rANS stream a coded tensor takes is the
information of its symbols under its table (the stream's word count and its last partial
word belong to no tensor), so the per-tensor figures add up to the total within a few bytes.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from dnerv_fast.codec.entropy import Histogram
from dnerv_fast.codec.modes import Mode, raw_bytes
from dnerv_fast.codec.quantize import QuantizedTensor
from dnerv_fast.codec.weights import GROUP_BYTES, Layout


@dataclass(frozen=True)
class WeightsSummary:
    """What a weights section costs, read from its :class:`Layout` without decoding."""

    bytes: int
    parameters: int
    bits: int
    modes: dict[str, int]       # tensors per mode, by mode name
    table_bytes: int            # the shared table and every own table

    @classmethod
    def of(cls, layout: Layout) -> WeightsSummary:
        counts = Counter(t.mode.name.lower() for t in layout.tensors)
        tables = sum(t.own_table_bytes for t in layout.tensors)
        return cls(layout.size, sum(t.parameters for t in layout.tensors), layout.bits,
                   {m.name.lower(): counts[m.name.lower()] for m in Mode},
                   tables + (layout.shared.nbytes if layout.shared else 0))

    @property
    def bits_per_parameter(self) -> float:
        return 8 * self.bytes / self.parameters

    def line(self) -> str:
        modes = ", ".join(f"{n} {name}" for name, n in self.modes.items())
        return (f"weights: {self.bytes:,} B = {self.bits_per_parameter:.3f} bits per parameter "
                f"({self.parameters:,} parameters at {self.bits} bits; tensors by mode: "
                f"{modes}; tables {self.table_bytes:,} B)")


@dataclass(frozen=True)
class TensorBits:
    """One tensor's bytes: exact ones, and its information in the rANS stream."""

    name: str
    shape: tuple[int, ...]
    parameters: int
    mode: Mode
    exact_bytes: int        # scales, zero points, own table, packed levels
    stream_bits: float      # 0 for RAW

    @property
    def bits_per_parameter(self) -> float:
        return (8 * self.exact_bytes + self.stream_bits) / max(1, self.parameters)


def tensor_bits(layout: Layout, decoded: OrderedDict[str, QuantizedTensor]) -> list[TensorBits]:
    """Every tensor's cost; ``decoded`` is :func:`.weights.decode_layout` of the section."""
    out = []
    for t in layout.tensors:
        exact = GROUP_BYTES * t.zero_point.size + t.own_table_bytes
        stream = 0.0
        if t.mode == Mode.RAW:
            exact += raw_bytes(t.parameters, layout.bits)
        else:
            stream = t.table.information_bits(Histogram.of(decoded[t.name].offsets))
        out.append(TensorBits(t.name, t.shape, t.parameters, t.mode, exact, stream))
    return out


def tensor_table(rows: list[TensorBits]) -> str:
    """One line per tensor: name, shape, parameters, mode, bytes and bits per parameter."""
    width = max([len("tensor")] + [len(r.name) for r in rows])
    lines = [f"{'tensor':<{width}} {'shape':>16} {'params':>9} {'mode':>6} {'bytes':>10} "
             f"{'bits/param':>10}"]
    for r in rows:
        shape = "x".join(map(str, r.shape)) or "scalar"
        total = r.exact_bytes + r.stream_bits / 8
        lines.append(f"{r.name:<{width}} {shape:>16} {r.parameters:>9,} "
                     f"{r.mode.name.lower():>6} {total:>10,.0f} {r.bits_per_parameter:>10.3f}")
    return "\n".join(lines)
