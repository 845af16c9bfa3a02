"""Progress of long work: a tqdm bar on a terminal, a plain line every few seconds elsewhere.

A tqdm bar redraws itself with carriage returns, which a log file keeps as one long line.
When the output is not a terminal (a file, a pipe, a CI log), :func:`progress_bar` returns a
:class:`LineProgress` instead: the same calls, and the same text (count, rate, ETA) written
as a whole line at most every :data:`LINE_EVERY_S` seconds and once at the end.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO

from tqdm import tqdm

LINE_EVERY_S = 10.0


class LineProgress:
    """The part of tqdm's interface the package uses, as newline-terminated lines."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None,
                 desc: str = "", unit: str = "it", disable: bool = False, leave: bool = True,
                 file: TextIO | None = None, **_: Any) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.file = file or sys.stderr
        self.n, self.postfix = 0, ""
        self.start = self.last = time.monotonic()

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LineProgress over nothing"
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> str:
        return tqdm.format_meter(self.n, self.total, time.monotonic() - self.start,
                                 prefix=self.desc, unit=self.unit, postfix=self.postfix or None)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last >= LINE_EVERY_S:
            self.last = now
            print(self._line(), file=self.file, flush=True)

    def close(self) -> None:
        if not self.disable and self.n and self.last != -1.0:
            print(self._line(), file=self.file, flush=True)
        self.last = -1.0          # closed: print the final line once
        self.disable = True


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar where stderr is a terminal, a :class:`LineProgress` elsewhere."""
    stream = kwargs.get("file") or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, **kwargs)
    return LineProgress(iterable, **kwargs)
