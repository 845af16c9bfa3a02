"""Atomic file and folder writes that touch nothing but the output the user named.

Every output is built under a temporary name beside its target (or, for a folder that already
exists, inside it) and moved into place only when complete, so an error or a crash leaves the
target as it was. The rules:

- The target's folder must exist: nothing is created above the output the user named.
- Without ``overwrite`` an existing target is refused, also when it appears while the output
  is being built (files are linked into place, which fails if the name is taken).
- With ``overwrite`` a file is replaced in one rename. A folder is never replaced as a whole:
  the entries this write produces are moved into it, one by one, and everything else in it
  stays. Nothing that this package did not write is ever deleted.
- Temporary names are ``.<target>.dnerv-partial-<pid>-<random>``. A run that was killed
  (``kill -9``) leaves one behind; the next write to the same target removes the ones whose
  process is gone, and only those.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Collection, Iterator, Mapping

from dnerv_fast.errors import OutputExistsError, OutputPathError

_PARTIAL = ".dnerv-partial-"
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:   # no C library to open by name (not Linux or macOS)
    _LIBC = None
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_mode(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create owner-only entries; give them the usual umask-based mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def remove_stale_partials(target: Path) -> None:
    """Remove what killed runs left while writing ``target`` (see the module docstring)."""
    pattern = re.compile(re.escape(f".{target.name}{_PARTIAL}") + r"(\d+)-")
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.match(entry.name)
            if match is None or _process_alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def _partial_prefix(target: Path) -> str:
    return f".{target.name}{_PARTIAL}{os.getpid()}-"


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """``path`` as a Path, after checking that it can be written.

    Raises :class:`OutputExistsError` if it exists and ``overwrite`` is False, and
    :class:`OutputPathError` if its folder is missing or not writable. (The callers below
    also refuse an existing target of the wrong kind: ``overwrite`` never turns a folder into
    a file or back.)
    """
    p = Path(path)
    if p.exists() or p.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"output '{p}' already exists; pass overwrite=True to replace it")
    parent = p.parent
    if not parent.is_dir():
        raise OutputPathError(f"cannot write '{p}': folder '{parent}' does not exist")
    _probe_writable(parent, p)
    return p


def _probe_writable(folder: Path, target: Path) -> None:
    """Create and remove a temporary file in ``folder``: the one test of writability that
    also holds for root, read-only mounts and full quotas."""
    try:
        fd, probe = tempfile.mkstemp(prefix=_partial_prefix(target), dir=folder)
    except OSError as e:
        raise OutputPathError(f"cannot write '{target}': folder '{folder}' is not writable "
                              f"({e.strerror})") from e
    os.close(fd)
    os.unlink(probe)


def check_file_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """:func:`check_output` for a file target: an existing folder there is refused."""
    p = check_output(path, overwrite)
    if p.is_dir():
        raise OutputPathError(f"cannot write file '{p}': a folder of that name exists")
    return p


def check_folder_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """:func:`check_output` for a folder target: an existing file there is refused."""
    p = check_output(path, overwrite)
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"cannot write folder '{p}': a file of that name exists")
    if p.is_dir():
        _probe_writable(p, p)
    return p


def _appeared(target: Path) -> OutputExistsError:
    return OutputExistsError(f"output '{target}' appeared while it was being written; it was "
                             f"left as it is")


def _link_into_place(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` unless that name is taken (no window for a race)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise _appeared(target) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if target.exists() or target.is_symlink():   # a file system without hard links
            raise _appeared(target) from None
        os.rename(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def _os_errors_named(target: Path) -> Iterator[None]:
    """An OSError while writing (a full disk, a quota, a vanished folder) becomes one
    :class:`OutputPathError` naming the output."""
    try:
        yield
    except OSError as e:
        raise OutputPathError(f"cannot write '{target}': {e.strerror or e}") from e


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (Linux renameat2 RENAME_NOREPLACE).

    A plain rename would silently replace an empty folder that appeared at ``dst``; where
    renameat2 is missing, the check before the rename leaves only that narrow window.
    """
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                     _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise _appeared(dst)
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(dst))
    if dst.exists() or dst.is_symlink():
        raise _appeared(dst)
    os.rename(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; give it the name ``path`` on success.

    The temporary name keeps the target's suffix so that tools which pick a format from the
    name (PyAV, Pillow, matplotlib) see the right one.
    """
    target = check_file_output(path, overwrite)
    remove_stale_partials(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_partial_prefix(target), suffix=target.suffix,
                                   dir=target.parent)
    except OSError as e:
        raise OutputPathError(f"cannot write '{target}': {e.strerror}") from e
    os.close(fd)
    tmp_path = Path(tmp)
    _usual_mode(tmp_path, directory=False)
    try:
        with _os_errors_named(target):
            yield tmp_path
            if overwrite:
                if target.is_dir():
                    raise OutputPathError(f"cannot write file '{target}': a folder of that name "
                                          f"appeared meanwhile")
                os.replace(tmp_path, target)
            else:
                _link_into_place(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _extra(there: Path, replaced: Collection[str]) -> list[str]:
    """The complaint about what a folder ``there`` holds beside the entries ``replaced``
    (partial outputs of this package's writes aside: the staging folder may be inside)."""
    extra = sorted({p.name for p in there.iterdir() if _PARTIAL not in p.name} - set(replaced))
    if not extra:
        return []
    shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
    return [f"'{there}' holds {len(extra)} file(s) this write does not replace ({shown})"]


def check_replaceable(target: Path, planned: Mapping[str, Collection[str] | None],
                      whole: bool = False) -> None:
    """Refuse (:class:`OutputPathError`) to write the entries ``planned`` into the existing
    folder ``target`` where that cannot be done safely.

    ``planned`` maps each entry's name to None for a file, or to the names of the files of
    a subfolder. Refused: a file against a folder or the reverse, and a subfolder (or, with
    ``whole``, ``target`` itself) that holds files the write does not replace: a decoded PNG
    video must not mix with another's leftover frames. Call it before long work, so that
    :func:`atomic_dir` does not refuse at the end.
    """
    if not target.is_dir():
        return
    found = _extra(target, planned) if whole else []
    for name, inner in planned.items():
        there = target / name
        if not (there.exists() or there.is_symlink()):
            continue
        if (inner is not None) != (there.is_dir() and not there.is_symlink()):
            found.append(f"'{there}' is a {'folder' if there.is_dir() else 'file'}")
        elif inner is not None:
            found += _extra(there, inner)
    if found:
        raise OutputPathError("refusing to mix outputs: " + "; ".join(found)
                              + "; remove them or choose another output")


def _plan(staged: Path) -> dict[str, set[str] | None]:
    return {e.name: ({p.name for p in e.iterdir()} if e.is_dir() else None)
            for e in staged.iterdir()}


def _merge(staged: Path, target: Path) -> None:
    """Move every entry of ``staged`` into the existing folder ``target``."""
    for entry in sorted(staged.iterdir()):
        there = target / entry.name
        if entry.is_dir() and there.is_dir():
            _merge(entry, there)
        else:
            os.replace(entry, there)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False,
               whole: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success its contents become the folder ``path``.

    A new ``path`` appears in one rename. An existing one (only with ``overwrite``) gains the
    entries written, each replacing the entry of the same name; its other entries stay,
    unless ``whole`` says that the entries written are the folder's whole content (a folder
    of video frames), when other entries are refused. Before anything is moved, entries that
    cannot be replaced safely (a folder against a file, a subfolder holding other files) are
    refused with :class:`OutputPathError`.
    """
    target = check_folder_output(path, overwrite)
    existing = target.is_dir()
    home = target if existing else target.parent
    remove_stale_partials(target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(target), dir=home))
    except OSError as e:
        raise OutputPathError(f"cannot write '{target}': {e.strerror}") from e
    _usual_mode(tmp, directory=True)
    try:
        with _os_errors_named(target):
            yield tmp
            if existing or target.exists() or target.is_symlink():
                if not overwrite:
                    raise _appeared(target)
                if not target.is_dir() or target.is_symlink():
                    raise OutputPathError(f"cannot write folder '{target}': it is no longer a "
                                          f"folder")
                check_replaceable(target, _plan(tmp), whole)
                _merge(tmp, target)
            else:
                _rename_noreplace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
