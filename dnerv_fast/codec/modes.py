"""How each tensor's symbols are stored: the cheapest of three modes, every table counted.

- ``SHARED``: rANS under the one table the whole model shares (stored once);
- ``OWN``: rANS under a table of the tensor's own (stored with it: worth it for a large
  tensor whose values are distributed unlike the rest);
- ``RAW``: the levels q = offset + zero point at ``bits`` fixed bits each (no table: for
  small tensors that no table describes well).

The shared table is fitted to the tensors that choose it, which changes what is cheapest for
the others, so the choice is repeated (:func:`choose`), keeping the cheapest round. Costs
are in bytes: tables exactly, rANS payloads as the information of the symbols under the
table (what the coder spends, within a few bytes for the whole stream).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence

import numpy as np

from dnerv_fast.codec.entropy import ABSENT_TABLE, Histogram, Table, fit_table

class Mode(IntEnum):
    """The stored mode byte of a tensor."""

    SHARED = 0
    OWN = 1
    RAW = 2


@dataclass(frozen=True)
class Choice:
    """The modes of every tensor; ``tables[i]`` is the table tensor i is coded under (None
    for RAW), and ``shared`` the shared table (None when no tensor uses it)."""

    shared: Table | None
    modes: tuple[Mode, ...]
    tables: tuple[Table | None, ...]
    cost_bytes: float


def raw_bytes(count: int, bits: int) -> int:
    """Bytes of ``count`` levels at ``bits`` bits each, packed."""
    return -(-count * bits // 8)


def _round(hists: Sequence[Histogram], own: Sequence[Table | None], bits: int,
           shared: Table | None) -> Choice:
    modes, tables, cost = [], [], 0.0
    for hist, table in zip(hists, own):
        options = [
            (shared.information_bits(hist) / 8 if shared else math.inf, Mode.SHARED, shared),
            (_own_bytes(hist, table), Mode.OWN, table),
            (raw_bytes(hist.total, bits), Mode.RAW, None),
        ]
        best = min(options, key=lambda o: o[0])
        cost += best[0]
        modes.append(best[1])
        tables.append(best[2])
    used = shared if Mode.SHARED in modes else None
    cost += used.nbytes if used else len(ABSENT_TABLE)
    return Choice(used, tuple(modes), tuple(tables), cost)


def choose(hists: Sequence[Histogram], bits: int) -> Choice:
    """The cheapest modes for tensors of these symbol histograms at ``bits`` bits.

    The shared table is fitted to a set of member tensors, all of them at first; each round
    drops the member that gains most by leaving (its shared cost over its best other mode),
    one at a time, because the table refitted without it suits the others better. That is
    at most one round more than tensors; the cheapest round is kept.
    """
    own = [fit_table(h) if h.total else None for h in hists]
    alone = [min(_own_bytes(h, t), raw_bytes(h.total, bits)) for h, t in zip(hists, own)]
    members = [i for i, h in enumerate(hists) if h.total]
    best: Choice | None = None
    while True:
        pooled = sum((hists[i] for i in members), Histogram.of(np.zeros(0)))
        shared = fit_table(pooled) if pooled.total else None
        choice = _round(hists, own, bits, shared)
        if best is None or choice.cost_bytes < best.cost_bytes:
            best = choice
        if not members:
            return best
        members.remove(max(members, key=lambda i: shared.information_bits(hists[i]) / 8
                           - alone[i]))


def _own_bytes(hist: Histogram, table: Table | None) -> float:
    return table.nbytes + table.information_bits(hist) / 8 if table else math.inf
