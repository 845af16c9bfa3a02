import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Generator

import pytest

# Without a GPU, Triton kernels run on CPU tensors under the interpreter. Triton reads this
# when a kernel is defined, so it must be set before anything imports the kernels.
try:
    import torch
    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Lets tests import the shared helpers in this folder (op_cases) as plain modules.
HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

# The commands (dnerv_fast.cli.main, which tests call in this process) raise glibc's malloc
# thresholds process-wide; keep the test process on stock malloc so no test depends on which
# command ran before it. tests/test_allocator.py checks both settings in fresh interpreters.
os.environ.setdefault("DNERV_FAST_MALLOC", "default")

# Native stacks a minute before faulthandler_timeout ends a hung run (see hang_watchdog.py).
NATIVE_DUMP_LEAD_S = 60
_watchdog: subprocess.Popen | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _watchdog
    timeout = float(config.getini("faulthandler_timeout") or 0)
    if timeout > 2 * NATIVE_DUMP_LEAD_S and shutil.which("gdb") and sys.platform == "linux":
        # Started while pytest's capture is suspended: the watchdog inherits the real stderr.
        _watchdog = subprocess.Popen(
            [sys.executable, str(HERE / "hang_watchdog.py"), str(os.getpid()),
             str(timeout - NATIVE_DUMP_LEAD_S)], stdin=subprocess.PIPE)


def _tell_watchdog(message: bytes) -> None:
    global _watchdog
    if _watchdog is not None:
        try:
            _watchdog.stdin.write(message)
            _watchdog.stdin.flush()
        except OSError:  # it has gone: the tests run on without it
            _stop_watchdog()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    _tell_watchdog(b"1")
    try:
        return (yield)
    finally:
        _tell_watchdog(b"0")


def _stop_watchdog() -> None:
    # Killed rather than waited for: a forked child (DataLoader worker) may still hold its stdin.
    global _watchdog
    if _watchdog is not None:
        _watchdog.kill()
        _watchdog.wait()
        try:
            _watchdog.stdin.close()
        except OSError:       # the pipe is broken: closing it only reports that
            pass
        _watchdog = None


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_watchdog()
