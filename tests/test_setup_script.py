"""scripts/setup.sh: a disk too full for the install is said plainly, before anything is made.

pip on a full disk fails half-way through TensorFlow's wheel with "Connection interrupted while
downloading" (a CI run of this project did), which points at the network instead of the disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checkout(tmp_path: Path) -> Path:
    """What setup.sh reads of a fresh checkout: pyproject.toml and the script, no .venv."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _setup(root: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(root / "scripts" / "setup.sh")],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )


def test_a_fresh_install_on_a_too_full_disk_stops_with_one_line_and_creates_nothing(tmp_path):
    root = _checkout(tmp_path)
    out = _setup(root, IMFUSE_SETUP_MIN_FREE_GB="1000000")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("imfuse set-up needs about 1000000 GB free; ")
    assert str(root) in lines[0] and "GB. Free some space" in lines[0]
    assert not (root / ".venv").exists()


def test_an_installed_venv_is_not_held_back_by_the_disk_check():
    """The check guards installing only: a set-up venv runs on a nearly full disk."""
    if not (ROOT / ".venv" / ".imfuse-installed").is_file():
        pytest.skip("this checkout's venv was not made by scripts/setup.sh")
    out = _setup(ROOT, IMFUSE_SETUP_MIN_FREE_GB="1000000")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
