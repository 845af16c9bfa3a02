"""One run per output: an exclusive lock held for a whole encode or decode.

Two runs writing the same output would overwrite each other's checkpoint and file, and one
would tell its user that work is kept where the other has already deleted it. So a run takes
``OUT.lock`` (beside the output ``OUT``: the file, or the folder a decode writes) with
``flock`` before it reads anything, and holds it to the end: an encode's checkpoint
``OUT.ckpt`` is covered by its output's lock. The lock file records the holder's process id,
and a second run to the same output fails at once naming it.

The kernel releases a flock when its process ends, however it ends (an exception, Ctrl-C,
``kill -9``), so a lock file left by a dead process is simply taken over. On a normal exit,
the run removes the lock file while still holding the lock; a run that opened the same name
just before then finds, once it gets the lock, that the name no longer leads to the file it
locked, and tries again.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import os
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from dnerv_fast.errors import OutputLockedError, OutputPathError

F = TypeVar("F", bound=Callable)

try:
    import fcntl
except ImportError:   # not POSIX: no lock (Windows)
    fcntl = None  # type: ignore[assignment]


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output``: ``OUT.lock`` beside it."""
    p = Path(os.path.abspath(output))
    if not p.name:
        raise OutputPathError(f"cannot write '{output}': it has no name to lock beside it")
    return p.with_name(p.name + ".lock")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of ``output`` for the block; raise :class:`OutputLockedError`
    at once, naming the holder's PID, when another run holds it."""
    path = lock_path(output)
    if fcntl is None:
        yield path
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            folder = Path(output).parent
            if not path.parent.is_dir():
                raise OutputPathError(f"cannot write '{output}': folder '{folder}' does "
                                      f"not exist") from e
            raise OutputPathError(f"cannot write '{output}': folder '{folder}' is not "
                                  f"writable ({e.strerror or e}: lock file '{path}')") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(
                    f"output '{output}' is in use by another dnerv-fast run (PID {holder}, "
                    f"lock '{path}'); wait for it to finish or choose another output") from None
            raise OutputPathError(f"cannot lock '{path}': {e.strerror or e}") from e
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)   # the holder removed it as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def locks_output(parameter: str) -> Callable[[F], F]:
    """Decorate a function so that it runs holding :func:`output_lock` of its argument
    ``parameter`` (in the main process of a torchrun job only: the others share its run)."""
    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            output = signature.bind(*args, **kwargs).arguments[parameter]
            # Standard output ("-") is no file another run could write over.
            if os.environ.get("RANK", "0") != "0" or str(output) == "-":
                return fn(*args, **kwargs)
            with output_lock(output):
                return fn(*args, **kwargs)
        return locked  # type: ignore[return-value]
    return decorate
