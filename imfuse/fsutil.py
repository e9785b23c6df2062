"""Folder moves that plain `os.rename` cannot make atomic, names nobody else picks, and
the one atomic file write (a temp path beside the target, renamed onto it when complete).

Linux's renameat2 can swap two paths in one step (RENAME_EXCHANGE) or refuse to replace
an existing one (RENAME_NOREPLACE); `os.rename` silently replaces an empty folder. Where
the call or the file system lacks them (non-Linux, old glibc, NFS, some FUSE mounts),
the functions here say so and callers fall back to plain renames.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def unique_token() -> str:
    """12 hex digits from uuid4: unique across hosts and containers (where PIDs are not)."""
    return uuid.uuid4().hex[:12]


@contextmanager
def atomic_path(path: str | os.PathLike):
    """A unique temp path beside `path`, with its extension (writers that pick a format by it
    still work), renamed onto `path` when the block succeeds and removed when it fails: a
    reader, or a kill -9, never sees half a file."""
    target = Path(path)
    tmp = target.with_name(f".{target.stem}.{unique_token()}.tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` through atomic_path, fsynced before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def owner() -> str:
    """'pid N on HOST', for messages about who holds a lock or a claim."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _renameat2(src: str | os.PathLike, dst: str | os.PathLike, flags: int) -> bool:
    """True if renameat2 did it; False if unavailable here; OSError for real failures."""
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if func(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), os.fspath(src), None, os.fspath(dst))


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Atomically swap two existing paths; False where the platform cannot."""
    return _renameat2(a, b, RENAME_EXCHANGE)


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename `src` to `dst`, FileExistsError if `dst` exists (atomic where renameat2 is)."""
    if _renameat2(src, dst, RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):  # fallback: check, then rename (callers hold a claim or a lock)
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.rename(src, dst)
