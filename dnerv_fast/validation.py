"""Checks of single values, shared by settings, configurations, headers and checkpoints.

Each check returns the value normalised (an ``int`` or a ``float``) or raises ``error``
with a message that names the value: a setting's name for the API and the command line
(:class:`~dnerv_fast.errors.UsageError`), a header field for a file
(:class:`~dnerv_fast.errors.BitstreamError`), and so on. Booleans are refused where numbers
are asked for, since ``True`` would otherwise pass as 1.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

from dnerv_fast.errors import UsageError


def show(value: Any, limit: int = 40) -> str:
    """``repr`` of a value, cut short: values may come from a stranger's file."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def is_number(value: Any) -> bool:
    """A finite real number (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and \
        math.isfinite(value)


def check_int(name: str, value: Any, lo: int, hi: int,
              error: type[Exception] = UsageError) -> int:
    """``value`` as an ``int`` in ``lo..hi`` (both included)."""
    if not is_int(value) or not lo <= value <= hi:
        raise error(f"{name} must be an integer in {lo}..{hi}, got {show(value)}")
    return int(value)


def interval(lo: float, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    """The interval in mathematical notation: ``(0, 1]``, ``[0, inf)``."""
    top = "inf)" if hi is None else f"{hi:g}{')' if hi_open else ']'}"
    return f"{'(' if lo_open else '['}{lo:g}, {top}"


def check_number(name: str, value: Any, lo: float, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False,
                 error: type[Exception] = UsageError) -> float:
    """``value`` as a finite ``float`` in the interval from ``lo`` to ``hi`` (None: no upper
    bound), each end included unless said open."""
    ok = is_number(value) and (value > lo if lo_open else value >= lo) and \
        (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        raise error(f"{name} must be a number in {interval(lo, hi, lo_open, hi_open)}, "
                    f"got {show(value)}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str],
                 error: type[Exception] = UsageError) -> str:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise error(f"unknown {name} {show(value)}; choose one of: {', '.join(choices)}")
    return value


def check_bool(name: str, value: Any, error: type[Exception] = UsageError) -> bool:
    if not isinstance(value, bool):
        raise error(f"{name} must be True or False, got {show(value)}")
    return value
