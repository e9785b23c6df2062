"""Where `imfuse data prepare` builds a dataset, and how it replaces the previous one.

A rerun must never leave OUT half old, half new: training reads whatever manifest.json
and shards OUT holds. So the pipeline writes into a staging folder and the finished
dataset is swapped in at the end. Two modes:

- `swap` (local OUT that can be renamed): staging is OUT.staging-<token>/ beside OUT, on
  the same file system. Files in OUT that imfuse did not write are hard-linked into the
  staging folder, then one renameat2(RENAME_EXCHANGE) swaps the two folders and the old
  one is removed. Without RENAME_EXCHANGE (NFS, non-Linux): OUT is renamed to
  OUT.previous-<token>, staging to OUT; a run killed between the two renames leaves OUT
  missing, and the next run (or `recover`) renames the previous dataset back.
- `merge` (gs://, s3://, or OUT is a mount point or sits in a folder we cannot write):
  there is no atomic rename of a folder, so staging is OUT/.imfuse-staging-<token>/.
  At the end the new files that the previous manifest does not name are moved in first
  (the previous dataset stays readable: its manifest and shards are untouched), then
  the new manifest replaces the old one in one atomic step (os.replace; an object
  overwrite on object stores), then the previous dataset's other shards are deleted.
  Shard names carry their content's digest (transforms.shard_name), so a shard the
  previous manifest names is never given other bytes: a same-named shard is the same
  shard and stays as it is. A cut at any step leaves the previous dataset or the new
  one, whole.

Concurrent runs: `output_lock` takes an flock on OUT.imfuse-prepare.lock beside OUT
(OUT/.imfuse-prepare.lock in merge mode, where OUT itself is never renamed). The kernel
drops the lock when its holder dies, so a killed run leaves no stale lock to clear (its
file, naming the dead pid, is simply reused). Object stores get no lock (a warning says so).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from imfuse import fsutil
from imfuse.errors import DataError

log = logging.getLogger("imfuse.data")

STAGING_INFIX = ".staging-"
PREVIOUS_INFIX = ".previous-"
INNER_STAGING = ".imfuse-staging-"
LOCK_SUFFIX = ".imfuse-prepare.lock"
INNER_LOCK = LOCK_SUFFIX
_TOKEN = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class Staging:
    """One run's staging folder for OUT and how it will be committed."""

    out: str
    path: str
    mode: str  # "swap" or "merge"


def is_remote(out: str) -> bool:
    return "://" in out


def mode_for(out: str) -> str:
    """`swap` where OUT can be renamed within its parent's file system, else `merge`."""
    if is_remote(out) or os.path.ismount(out):
        return "merge"
    return "swap" if os.access(os.path.dirname(out) or ".", os.W_OK) else "merge"


# ------------------------------------------------------------------------------ lock


def lock_path(out: str) -> str | None:
    """Lock file for OUT; None for object stores (no flock there)."""
    if is_remote(out):
        return None
    return os.path.join(out, INNER_LOCK) if mode_for(out) == "merge" else out + LOCK_SUFFIX


@contextlib.contextmanager
def output_lock(out: str) -> Iterator[None]:
    """Hold an exclusive lock on OUT for the whole run; DataError if another run holds it."""
    if not is_remote(out):
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)  # so mode_for sees the real parent
    path = lock_path(out)
    if path is None:
        log.warning("ingest: no lock on %s (object store): do not run two prepares on it at once", out)
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = _acquire(path, out)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting opener then sees a new inode
        os.close(fd)


def _acquire(path: str, out: str) -> int:
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "pid unknown"
            os.close(fd)
            raise DataError(f"another imfuse prepare is writing {out} ({holder}); wait for it to finish") from None
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (fsutil.owner() + "\n").encode(), 0)
            return fd
        os.close(fd)  # the previous holder removed this file while we opened it: retry


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------- begin / recover


def _leftovers(out: str, infix: str) -> list[str]:
    """OUT<infix><token> siblings made by earlier runs (never a user's similarly named folder)."""
    found = glob.glob(glob.escape(out + infix) + "*")
    return sorted(p for p in found if _TOKEN.match(p[len(out + infix):]))


def recover(out: str) -> None:
    """Undo what a killed run left (call with the lock held): restore OUT if a swap was cut
    between its two renames, and remove stale staging folders."""
    if is_remote(out):
        return
    previous = _leftovers(out, PREVIOUS_INFIX)
    if previous and not os.path.lexists(out):
        newest = max(previous, key=os.path.getmtime)
        os.rename(newest, out)
        log.warning("ingest: restored %s from %s (an earlier run was stopped mid-swap)", out, newest)
        previous.remove(newest)
    inner = glob.glob(os.path.join(glob.escape(out), INNER_STAGING + "*")) if os.path.isdir(out) else []
    for stale in previous + _leftovers(out, STAGING_INFIX) + inner:
        log.warning("ingest: removing %s, left by an earlier run that did not finish", stale)
        shutil.rmtree(stale, ignore_errors=True)


def begin(out: str) -> Staging:
    """A fresh, empty staging folder for OUT (the pipeline writes only there)."""
    token = fsutil.unique_token()
    mode = mode_for(out)
    path = out + STAGING_INFIX + token if mode == "swap" else out.rstrip("/") + "/" + INNER_STAGING + token
    if not is_remote(out):
        os.makedirs(path)
    return Staging(out=out, path=path, mode=mode)


def abort(stage: Staging) -> None:
    """Remove a failed run's staging folder; OUT is untouched (best effort)."""
    try:
        if is_remote(stage.out):
            from apache_beam.io.filesystems import FileSystems

            if FileSystems.exists(stage.path + "/"):
                FileSystems.delete([stage.path + "/"])
        else:
            shutil.rmtree(stage.path, ignore_errors=True)
    except Exception as exc:  # noqa: BLE001 - the original failure matters more
        log.warning("ingest: could not remove %s: %s", stage.path, exc)


# ----------------------------------------------------------------------------- commit


def commit(stage: Staging, new_files: list[str], old_files: Iterable[str], owned: Iterable[str]) -> None:
    """Make the staged dataset OUT's. `new_files`: staged paths (relative, manifest.json
    last); `old_files`: the previous dataset's shards; `owned`: other names imfuse writes."""
    if stage.mode == "swap":
        _carry_foreign(stage.out, stage.path, set(old_files) | set(owned))
        _swap_in(stage.path, stage.out)
    else:
        _merge_in(stage, new_files, old_files)


def _carry_foreign(out: str, staging: str, imfuse_files: set[str]) -> None:
    """Hard-link (else copy) files in OUT that imfuse did not write into the staging
    folder, so the swap keeps them (a user's notes beside the dataset)."""
    if not os.path.isdir(out):
        return
    for root, dirs, files in os.walk(out):
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        for name in files + links:
            src = os.path.join(root, name)
            rel = os.path.relpath(src, out)
            dst = os.path.join(staging, rel)
            if rel in imfuse_files or os.path.lexists(dst):
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            _link_or_copy(src, dst)


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:  # another file system inside OUT, or links not allowed: copy
        shutil.copy2(src, dst)


def _swap_in(staging: str, out: str) -> None:
    """Atomic where RENAME_EXCHANGE works; else two renames that `recover` can undo."""
    if not os.path.lexists(out):
        fsutil.rename_noreplace(staging, out)
        return
    if fsutil.exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous dataset
        return
    aside = out + PREVIOUS_INFIX + fsutil.unique_token()
    os.rename(out, aside)
    os.rename(staging, out)
    shutil.rmtree(aside, ignore_errors=True)


def _merge_in(stage: Staging, new_files: list[str], old_files: Iterable[str]) -> None:
    """Move the staged dataset into OUT keeping the previous one readable as long as we can."""
    from apache_beam.io.filesystems import FileSystems

    *data, manifest = new_files
    target = FileSystems.join(stage.out, manifest)
    listed = set(old_files) if FileSystems.exists(target) else set()  # what readers read now
    for rel in data:
        src, dst = FileSystems.join(stage.path, rel), FileSystems.join(stage.out, rel)
        if rel not in listed:
            _move(src, dst)  # the previous manifest does not name it: readers never look
        elif not _same_bytes(src, dst):
            # Names carry the content's digest, so this copy is damaged (both manifests
            # record the digest its name says): the right bytes can only help readers.
            log.warning("ingest: %s did not match its name's digest; replaced", dst)
            _move(src, dst)
    _move(FileSystems.join(stage.path, manifest), target)  # the atomic switch to the new dataset
    stale = [FileSystems.join(stage.out, p) for p in sorted(set(old_files) - set(new_files))]
    stale = [p for p in stale if FileSystems.exists(p)]
    if stale:
        FileSystems.delete(stale)
    abort(stage)  # removes the staging folder and the staged copies of unchanged shards


def _same_bytes(a: str, b: str) -> bool:
    """Whether two files hold the same bytes (object stores: same size and stored checksum)."""
    from apache_beam.io.filesystems import FileSystems

    if not is_remote(a):
        import filecmp

        return os.path.isfile(b) and filecmp.cmp(a, b, shallow=False)
    try:
        (ma,), (mb,) = (FileSystems.match([p])[0].metadata_list for p in (a, b))
        return ma.size_in_bytes == mb.size_in_bytes and FileSystems.checksum(a) == FileSystems.checksum(b)
    except Exception:  # noqa: BLE001 - unknown counts as different: only costs the safe path
        return False


def _move(src: str, dst: str) -> None:
    if is_remote(src):
        from apache_beam.io.filesystems import FileSystems

        FileSystems.copy([src], [dst])  # an object overwrite is atomic: dst is never missing
        FileSystems.delete([src])
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.replace(src, dst)
