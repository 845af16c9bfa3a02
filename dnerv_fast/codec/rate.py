"""A rate target: the network widths and keyframe quality that make a file of B bits per pixel.

Every byte of a .dnerv file is accounted for before training (docs/FORMAT.md):

- framing and header: exact, from the header the encoder will write (the caller supplies
  its size for a candidate configuration and quality);
- keyframes: exact, from coding the real keyframes at each candidate quality (those bytes are
  the ones stored, so nothing is coded twice);
- weights: exact for the per-group scales and zero points (5 bytes a group), the mode byte
  of each tensor and the entropy stream's fixed fields; predicted for the rANS-coded symbols
  and the shared frequency table from bits per parameter measured on trained networks
  (:data:`SYMBOL_BITS`; the per-tensor choice of :mod:`.modes` only lowers it).

The keyframes take the best candidate quality whose bytes stay within
:data:`KEYFRAME_SHARE` of the budget (the paper's keyframes are 35-61% of its bits), or the
lowest quality when none does; the network is then the largest of a ladder of widths, all
four widths (``fc_dim``, ``stem_dim``, ``lower_width``, ``encoder_dim``) scaled together
from the base configuration, whose predicted file fits the budget. When not even the
smallest network fits beside those keyframes, lower qualities are tried in turn.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from dnerv_fast.codec.entropy import STREAM_HEAD_BYTES, TABLE_HEAD_BYTES
from dnerv_fast.codec.quantize import num_groups
from dnerv_fast.codec.weights import GROUP_BYTES
from dnerv_fast.configs import MAX_WIDTH, MIN_DECODER_WIDTH, ModelConfig
from dnerv_fast.options import keyframe_setting
from dnerv_fast.errors import CodecError
from dnerv_fast.model.dnerv import DNeRV

# rANS-coded bits per weight (symbols only, table apart) by bit depth. Measured on a
# tiny-family network (fc_dim 4, 61k parameters) trained 10 epochs on carphone: 3.90, 4.97,
# 6.00, 7.02, 8.03 for 4..8 bits (untrained: 3.92 .. 8.15); per-channel ranges leave the
# offsets close to uniform, so they cost about the bit depth. The table leans slightly
# below, as longer training concentrates the weights (7.7 bits at 8 after 60 epochs).
SYMBOL_BITS = {4: 3.85, 5: 4.9, 6: 5.95, 7: 6.95, 8: 7.9}
# Bytes of the weights' coding fields other than the symbols: the shared table's lo and
# span, and the stream's word count (the table adds a byte for each symbol value in its span,
# at most 2^(bits+1) - 1 values, and each tensor a mode byte).
STREAM_FIXED_BYTES = TABLE_HEAD_BYTES + STREAM_HEAD_BYTES
KEYFRAME_SHARE = 0.5
TOLERANCE = 0.15           # the file lands within this fraction of the target
SCALE_STEPS = 16           # ladder steps per doubling of every width
MIN_SCALE_LOG2, MAX_SCALE_LOG2 = -7, 3
MIN_TARGET_BPP, MAX_TARGET_BPP = 1e-4, 24.0

# Candidate keyframe qualities, best first, in each codec's own scale.
QUALITY_LADDERS: dict[str, tuple[int, ...]] = {
    "webp": (95, 90, 85, 80, 75, 70, 60, 50, 40, 30, 20, 10, 5, 1),
    "jpeg": (95, 90, 85, 80, 75, 70, 60, 50, 40, 30, 20, 10, 5, 1),
    "png": (0,),
    "hevc": (16, 20, 24, 28, 32, 36, 40, 44, 51),
    "av1": (20, 25, 30, 35, 40, 45, 50, 55, 63),
}


@dataclass(frozen=True)
class Candidate:
    """One network of the ladder: its configuration, parameters and predicted weight bytes."""

    config: ModelConfig
    parameters: int
    weight_bytes: int


@dataclass(frozen=True)
class RatePlan:
    """What a rate target chose, with the bytes it predicts for each part of the file."""

    target_bpp: float
    pixels: int
    network: Candidate
    bits: int
    quality: int
    keyframes: list[bytes]
    overhead_bytes: int       # framing + header, exact

    @property
    def keyframe_bytes(self) -> int:
        return keyframe_section_bytes(self.keyframes)

    @property
    def predicted_bytes(self) -> int:
        return self.overhead_bytes + self.network.weight_bytes + self.keyframe_bytes

    @property
    def predicted_bpp(self) -> float:
        return 8 * self.predicted_bytes / self.pixels

    def describe(self, codec: str) -> str:
        """Two lines: what was chosen, and why."""
        c = self.network.config
        budget = self.target_bpp * self.pixels / 8
        return (f"rate target {self.target_bpp:g} bpp over {self.pixels:,} pixels = "
                f"{budget:,.0f} bytes: keyframes {keyframe_setting(codec, self.quality)} "
                f"({self.keyframe_bytes:,} B, {self.keyframe_bytes / budget:.0%}), network "
                f"fc_dim={c.fc_dim} stem_dim={c.stem_dim} lower_width={c.lower_width} "
                f"encoder_dim={c.encoder_dim} ({self.network.parameters:,} parameters, "
                f"~{self.network.weight_bytes:,} B at {self.bits} bits)\n"
                f"why: the best keyframe quality within {KEYFRAME_SHARE:.0%} of the budget (lower "
                f"if the smallest network did not fit beside it), then the largest network "
                f"that fits; predicted file {self.predicted_bytes:,} B = "
                f"{self.predicted_bpp:.4f} bpp")


def keyframe_section_bytes(keyframes: Sequence[bytes]) -> int:
    """Bytes of a KEYF section: a uint32 length before each keyframe."""
    return sum(4 + len(k) for k in keyframes)


def check_target(target_bpp: float) -> float:
    if isinstance(target_bpp, bool) or not isinstance(target_bpp, (int, float)) or \
            not math.isfinite(target_bpp) or not MIN_TARGET_BPP <= target_bpp <= MAX_TARGET_BPP:
        raise CodecError(f"the target rate must be a number of bits per pixel in "
                         f"{MIN_TARGET_BPP:g}..{MAX_TARGET_BPP:g}, got {target_bpp!r}")
    return float(target_bpp)


def predict_weight_bytes(shapes: Sequence[tuple[int, ...]], bits: int) -> int:
    """Predicted size of the weights section of a network with tensors of ``shapes``."""
    params = sum(math.prod(s) for s in shapes)
    groups = sum(num_groups(tuple(s)) for s in shapes)
    table = 2 ** (bits + 1) - 1
    return (GROUP_BYTES * groups + STREAM_FIXED_BYTES + table + len(shapes)
            + math.ceil(params * SYMBOL_BITS[bits] / 8))


def scaled(base: ModelConfig, scale: float) -> ModelConfig:
    """``base`` with its four widths multiplied by ``scale`` (rounded), kept at least as wide
    as a valid decoder needs (:data:`~dnerv_fast.configs.MIN_DECODER_WIDTH`)."""
    def width(w: int, least: int) -> int:
        return min(MAX_WIDTH, max(least, round(w * scale)))
    return dataclasses.replace(base, fc_dim=width(base.fc_dim, 2),
                               stem_dim=width(base.stem_dim, 1),
                               lower_width=width(base.lower_width, MIN_DECODER_WIDTH),
                               encoder_dim=width(base.encoder_dim, MIN_DECODER_WIDTH),
                               name=f"{base.name}-x{scale:.3g}")


def ladder(base: ModelConfig, bits: int,
           network: Callable[[ModelConfig], torch.nn.Module] = DNeRV) -> Iterator[Candidate]:
    """Networks (``network(config)``, D-NeRV by default) from ``base`` scaled by
    2^(k/SCALE_STEPS), smallest first, distinct widths (built lazily on the meta device: the
    caller stops once they outgrow its budget)."""
    seen: set[tuple[int, int, int, int]] = set()
    for k in range(MIN_SCALE_LOG2 * SCALE_STEPS, MAX_SCALE_LOG2 * SCALE_STEPS + 1):
        config = scaled(base, 2.0 ** (k / SCALE_STEPS))
        key = (config.fc_dim, config.stem_dim, config.lower_width, config.encoder_dim)
        if key in seen:
            continue
        seen.add(key)
        with torch.device("meta"):
            shapes = [tuple(t.shape) for t in network(config).state_dict().values()]
        yield Candidate(config, sum(math.prod(s) for s in shapes),
                        predict_weight_bytes(shapes, bits))


def plan(target_bpp: float, pixels: int, base: ModelConfig, bits: int, codec: str,
         qualities: Sequence[int] | None, code_keyframes: Callable[[int], list[bytes]],
         overhead: Callable[[ModelConfig, int, int], int]) -> RatePlan:
    """Choose widths and keyframe quality so that the file is ``target_bpp`` over ``pixels``.

    ``code_keyframes(quality)`` returns every keyframe coded at ``quality``;
    ``overhead(config, parameters, quality)`` the exact framing and header bytes of that
    file. Raises :class:`CodecError` when even the smallest network with the lowest
    keyframe quality is larger than the target.
    """
    target_bpp = check_target(target_bpp)
    budget = target_bpp * pixels / 8
    ladder_qualities = tuple(qualities) if qualities else QUALITY_LADDERS[codec]
    keyframes_at = functools.cache(code_keyframes)
    # The best quality within the share; if the smallest network does not fit beside it,
    # lower qualities in turn (a small network with worse keyframes beats no file at all).
    start = next((i for i, q in enumerate(ladder_qualities) if keyframe_section_bytes(
        keyframes_at(q)) <= KEYFRAME_SHARE * budget), len(ladder_qualities) - 1)
    for quality in ladder_qualities[start:]:
        keyframes = keyframes_at(quality)
        key_bytes = keyframe_section_bytes(keyframes)
        best: tuple[Candidate, int] | None = None
        for candidate in ladder(base, bits):
            head = overhead(candidate.config, candidate.parameters, quality)
            if head + candidate.weight_bytes + key_bytes > budget:
                break
            best = (candidate, head)
        if best is not None:
            return RatePlan(target_bpp, pixels, best[0], bits, quality, keyframes, best[1])
    smallest = next(ladder(base, bits))
    least = overhead(smallest.config, smallest.parameters, quality) + smallest.weight_bytes + key_bytes
    raise CodecError(
        f"target {target_bpp:g} bpp ({budget:,.0f} bytes for {pixels:,} pixels) is "
        f"below what the smallest network can reach: {8 * least / pixels:.4f} bpp "
        f"({smallest.parameters:,} parameters at {bits} bits and {key_bytes:,} B "
        f"of keyframes at {keyframe_setting(codec, quality)}, the lowest offered); ask for more, "
        f"code longer videos, or lower bits=")
