"""Filesystem writes that never leave half a file, and one readable message per filesystem fault.

Every file the engine writes whole (summary, config, checkpoint, error.txt, report) goes through
`atomic_write`: a temporary sibling, flushed and fsynced, then renamed over the target. A kill,
a full disk or a permission error leaves either the old file or the new one, and no temporary.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Faults of the machine, not of a trial: every other trial would hit them too.
STORAGE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO}
)
_HINTS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (disk quota exceeded)",
    errno.EACCES: "make it writable",
    errno.EPERM: "make it writable",
    errno.EROFS: "write somewhere writable (read-only filesystem)",
}


class StorageError(OSError):
    """A filesystem fault outside any trial's control: stops the sweep, which stays resumable."""


def is_storage_fault(exc: BaseException) -> bool:
    """True for permission, read-only, full-disk and I/O errors."""
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def describe(exc: OSError) -> str:
    """One line: the path, the cause and what to do."""
    path = exc.filename if exc.filename is not None else "<unknown path>"
    cause = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno)
    tail = f"; {hint}, then rerun the same command to resume" if hint else ""
    return f"{path}: {cause}{tail}"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary sibling of `path`, then rename it over `path`.

    On any error (or interrupt) the temporary is removed and `path` is untouched; an `OSError`
    is re-raised naming `path`, not the temporary.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: concurrent writers
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and e.errno is not None:
            raise type(e)(e.errno, e.strerror, str(path)) from e
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode()))


def check_writable(directory: str | Path) -> None:
    """Raise `StorageError` unless `directory` (or the ancestor that would create it) is writable.

    Uses the effective ids, so a process that dropped privileges is judged as itself.
    """
    node = Path(directory).absolute()
    while not node.exists() and node != node.parent:
        node = node.parent
    ok = os.access(node, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)
    if not ok or not node.is_dir():
        if not node.is_dir():
            err = errno.ENOTDIR
        else:
            err = errno.EROFS if _read_only_mount(node) else errno.EACCES
        raise StorageError(err, f"{os.strerror(err)} (cannot create {directory})", str(node))


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
