"""Native stacks of a hung test: gdb's backtrace of every thread of the pytest process.

pytest's ``faulthandler_timeout`` (pyproject.toml) prints only Python frames before it ends a
hung run; a deadlock inside torch, OpenMP or oneDNN needs the C frames too. This runs as its
own process, so it works whatever the hung process holds (the GIL included). The conftest
writes ``1`` to its stdin when a test starts and ``0`` when it ends; a test still running
``after`` seconds later gets one dump, on the stderr this process inherited (the terminal's,
not pytest's capture). It exits when its stdin closes.

Usage: python hang_watchdog.py PID AFTER_SECONDS
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time

GDB_TIMEOUT_S = 50  # within the minute the conftest leaves before faulthandler ends the run


def watch(pid: int, after: float) -> None:
    started: float | None = None
    while True:
        wait = None if started is None else max(0.0, started + after - time.monotonic())
        ready, _, _ = select.select([0], [], [], wait)
        if ready:
            data = os.read(0, 4096)
            if not data:
                return
            started = time.monotonic() if data.endswith(b"1") else None
        elif started is not None:
            print(f"\nhang_watchdog: a test has run {after:.0f} s; native stacks of {pid}:",
                  file=sys.stderr, flush=True)
            try:
                subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                               stdout=sys.stderr, stderr=subprocess.STDOUT, timeout=GDB_TIMEOUT_S,
                               check=False)
            except subprocess.TimeoutExpired:
                print(f"hang_watchdog: gdb gave no stacks in {GDB_TIMEOUT_S} s", file=sys.stderr)
            started = None


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]))
