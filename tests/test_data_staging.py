"""imfuse.data.staging and imfuse.fsutil: the lock on OUT, the swap, and what a killed run leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pathlib import Path

import pytest

from imfuse import fsutil
from imfuse.data import staging
from imfuse.errors import DataError


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


def _dataset(path, marker: bytes) -> None:
    os.makedirs(os.path.join(path, "content", "train"))
    with open(os.path.join(path, "manifest.json"), "wb") as fh:
        fh.write(marker)
    with open(os.path.join(path, "content", "train", "part-00000-of-00001.tfrecord"), "wb") as fh:
        fh.write(marker * 3)


def test_lock_refuses_a_second_holder_with_its_pid(tmp_path):
    out = str(tmp_path / "out")
    with staging.output_lock(out):
        assert os.path.isfile(out + staging.LOCK_SUFFIX)
        with pytest.raises(DataError) as info:
            with staging.output_lock(out):
                pass
        message = str(info.value)
        assert message.startswith(f"another imfuse prepare is writing {out} (pid {os.getpid()} on ")
        assert "\n" not in message
    assert not os.path.exists(out + staging.LOCK_SUFFIX)
    with staging.output_lock(out):  # released: the next run gets it
        pass


def test_lock_held_by_another_process_and_stale_lock_file(tmp_path):
    out = str(tmp_path / "out")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from imfuse.data.staging import output_lock\n"
         f"with output_lock({out!r}):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match=rf"writing .*out \(pid {holder.pid} on "):
            with staging.output_lock(out):
                pass
    finally:
        holder.kill()
        holder.communicate()
    # Killed holder: its lock file stays, but the kernel dropped the flock with the process.
    assert os.path.exists(out + staging.LOCK_SUFFIX)
    with staging.output_lock(out):
        pass


def test_swap_replaces_out_and_keeps_foreign_files(tmp_path):
    out = str(tmp_path / "out")
    _dataset(out, b"old")
    with open(os.path.join(out, "notes.txt"), "w") as fh:
        fh.write("mine")
    stage = staging.begin(out)
    assert stage.mode == "swap" and os.path.dirname(stage.path) == str(tmp_path)
    _dataset(stage.path, b"new")
    staging.commit(stage, ["content/train/part-00000-of-00001.tfrecord", "manifest.json"],
                   ["content/train/part-00000-of-00001.tfrecord"], ["manifest.json"])
    assert _tree(out) == {"manifest.json": b"new", "content/train/part-00000-of-00001.tfrecord": b"newnewnew",
                          "notes.txt": b"mine"}
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_swap_without_rename_exchange_and_recovery_after_a_kill_between_renames(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    _dataset(out, b"old")
    monkeypatch.setattr(fsutil, "exchange", lambda a, b: False)  # NFS: no RENAME_EXCHANGE
    stage = staging.begin(out)
    _dataset(stage.path, b"new")
    real_rename, calls = os.rename, []

    def killed_after_first(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for SIGKILL between the two renames
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        staging.commit(stage, ["manifest.json"], [], [])
    monkeypatch.setattr(os, "rename", real_rename)
    assert not os.path.exists(out) and ".previous-" in calls[0]
    os.makedirs(out + ".staging-notes")  # a user's folder: not ours, never removed
    staging.recover(out)
    assert _tree(out)["manifest.json"] == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out", "out.staging-notes"]

    stage = staging.begin(out)  # the fallback path, uninterrupted
    _dataset(stage.path, b"new")
    staging.commit(stage, ["manifest.json"], [], [])
    assert _tree(out)["manifest.json"] == b"new"
    assert sorted(os.listdir(tmp_path)) == ["out", "out.staging-notes"]


def test_recover_removes_stale_staging_folders(tmp_path):
    out = str(tmp_path / "out")
    _dataset(out, b"old")
    left = [staging.begin(out).path, staging.begin(out).path]
    inner = os.path.join(out, staging.INNER_STAGING + fsutil.unique_token())
    os.makedirs(inner)
    staging.recover(out)
    assert not any(os.path.exists(p) for p in left + [inner])
    assert _tree(out)["manifest.json"] == b"old"


def test_merge_mode_for_mount_points_and_object_stores(tmp_path, monkeypatch):
    assert staging.mode_for("gs://bucket/data") == "merge" and staging.lock_path("s3://b/d") is None
    out = str(tmp_path / "mnt")
    monkeypatch.setattr(os.path, "ismount", lambda p: p == out)
    assert staging.mode_for(out) == "merge"
    assert staging.lock_path(out) == os.path.join(out, staging.INNER_LOCK)
    assert staging.mode_for(str(tmp_path / "other")) == "swap"


def test_rename_noreplace_refuses_an_existing_target(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # empty: plain os.rename would silently replace it
    with pytest.raises(FileExistsError):
        fsutil.rename_noreplace(tmp_path / "a", tmp_path / "b")
    fsutil.rename_noreplace(tmp_path / "a", tmp_path / "c")
    assert sorted(os.listdir(tmp_path)) == ["b", "c"]


# ----------------------------------------------------------------- merge mode (mount points)


def _manifest_dataset(path, shards: dict[str, bytes]) -> list[str]:
    """A dataset read_manifest and the reader accept: content/train shards with these bytes."""
    from imfuse.data import manifest as mf

    entries = []
    for rel, data in sorted(shards.items()):
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        Path(path, rel).write_bytes(data)
        entries.append({"path": rel, "examples": 1, "bytes": len(data), "sha256": data.hex()})
    doc = {"format": mf.FORMAT, "counts": {"content": {"train": len(entries)}},
           "shards": {"content": {"train": entries}}}
    doc["dataset_hash"] = mf.dataset_hash(doc)
    Path(path, "quarantine.jsonl").write_text(f"{len(entries)} shards\n")
    Path(path, "manifest.json").write_text(json.dumps(doc))
    return sorted(shards) + ["quarantine.jsonl", "manifest.json"]  # manifest last, as prepare passes them


def _read(out) -> dict[str, bytes]:
    """What a reader gets from OUT: every listed shard's bytes (DataError if it can't)."""
    from imfuse.data.reader import shard_paths

    return {os.path.relpath(p, out): Path(p).read_bytes() for p in shard_paths(out, "content", "train")}


def _merge_stage(out, monkeypatch, shards: dict[str, bytes]):
    monkeypatch.setattr(staging, "mode_for", lambda path: "merge")
    stage = staging.begin(out)
    assert stage.mode == "merge" and os.path.dirname(stage.path) == out
    return stage, _manifest_dataset(stage.path, shards)


OLD = {"content/train/part-00000-of-00001.tfrecord": b"old-0"}
RESHARDED = {"content/train/part-00000-of-00002.tfrecord": b"new-0", "content/train/part-00001-of-00002.tfrecord": b"new-1"}


def _commit_killed_at(stage, new_files, monkeypatch, suffix: str) -> None:
    """Commit over OLD, killed at the first move whose target ends with `suffix`
    (KeyboardInterrupt stands in for SIGKILL); os.replace is real again afterwards."""
    real_replace = os.replace

    def killed(src, dst):
        if dst.endswith(suffix):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    try:
        with pytest.raises(KeyboardInterrupt):
            staging.commit(stage, new_files, list(OLD), [])
    finally:
        monkeypatch.setattr(os, "replace", real_replace)


@pytest.mark.parametrize("cut_at", [1, 2, 3, 4])
def test_merge_killed_midway_leaves_the_previous_dataset_readable(tmp_path, monkeypatch, cut_at):
    """New shard names: each move before the manifest's leaves the old manifest and shards alone."""
    out = str(tmp_path / "mnt")
    _manifest_dataset(out, OLD)
    stage, new_files = _merge_stage(out, monkeypatch, RESHARDED)
    real_replace, moved = os.replace, []

    def killed(src, dst):
        moved.append(os.path.relpath(dst, out))
        if len(moved) == cut_at:
            raise KeyboardInterrupt  # stands in for SIGKILL
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        staging.commit(stage, new_files, list(OLD), [])
    monkeypatch.setattr(os, "replace", real_replace)
    assert moved[-1] == new_files[cut_at - 1]
    assert _read(out) == OLD  # the previous dataset, whole

    staging.recover(out)  # what the next run does first
    stage, new_files = _merge_stage(out, monkeypatch, RESHARDED)
    staging.commit(stage, new_files, list(OLD), [])
    assert _read(out) == RESHARDED
    assert sorted(p for p in _tree(out) if p.endswith(".tfrecord")) == sorted(RESHARDED)  # old shard gone
    assert not [p for p in os.listdir(out) if p.startswith(".imfuse-")]


def test_merge_keeps_unchanged_shards_and_switches_by_the_manifest(tmp_path, monkeypatch):
    """Same name, same bytes: the file stays as it is (no window); other files come in before the switch."""
    out = str(tmp_path / "mnt")
    _manifest_dataset(out, OLD)
    kept = os.stat(os.path.join(out, *next(iter(OLD)).split("/"))).st_ino
    grown = dict(OLD, **{"content/train/part-00000-of-00001.extra.tfrecord": b"new"})
    stage, new_files = _merge_stage(out, monkeypatch, grown)
    _commit_killed_at(stage, new_files, monkeypatch, "manifest.json")
    assert _read(out) == OLD
    stage, new_files = _merge_stage(out, monkeypatch, grown)
    staging.commit(stage, new_files, list(OLD), [])
    assert _read(out) == grown
    assert os.stat(os.path.join(out, *next(iter(OLD)).split("/"))).st_ino == kept


def test_merge_replaces_a_damaged_same_named_shard_without_dropping_the_manifest(tmp_path, monkeypatch):
    """Shard names carry their digest, so same name, other bytes means the old copy is damaged:
    it is replaced, and a cut there still leaves OUT with its manifest."""
    out = str(tmp_path / "mnt")
    _manifest_dataset(out, OLD)
    repaired = {"content/train/part-00000-of-00001.tfrecord": b"old-0-whole"}
    stage, new_files = _merge_stage(out, monkeypatch, repaired)
    _commit_killed_at(stage, new_files, monkeypatch, ".tfrecord")
    assert _read(out) == OLD
    stage, new_files = _merge_stage(out, monkeypatch, repaired)
    staging.commit(stage, new_files, list(OLD), [])
    assert _read(out) == repaired


def test_atomic_write_text_replaces_the_whole_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "run" / "mlflow_run.json"
    fsutil.atomic_write_text(target, "one")
    fsutil.atomic_write_text(target, "two")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        fsutil.atomic_write_text(target, "three")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["mlflow_run.json"]
