"""Tests for imfuse.fsutil's atomic write: a target is either the old file or the new one."""

from __future__ import annotations

import pytest

from imfuse.fsutil import atomic_path, atomic_write_text


def test_atomic_path_renames_on_success_and_keeps_the_extension(tmp_path):
    target = tmp_path / "out.png"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nobody sees the new file before the block ends
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_path_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_atomic_write_text_makes_the_folder(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.json", "{}\n")
    assert (tmp_path / "a" / "b.json").read_text() == "{}\n"
