"""`imfuse data demo` then `imfuse data prepare` end to end, and CLI errors (exit 2, one line)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from imfuse.cli import main


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    assert main(["data", "demo", "--out", str(root / "imgs"), "--content", "6", "--styles", "6", "--size", "64"]) == 0
    return root


def test_demo_is_deterministic_and_offline(demo, tmp_path):
    assert main(["data", "demo", "--out", str(tmp_path), "--content", "6", "--styles", "6", "--size", "64"]) == 0
    assert _tree_digest(tmp_path) == _tree_digest(demo / "imgs")
    assert len(list((tmp_path / "content").glob("*.jpg"))) == 6
    assert len(list((tmp_path / "styles").glob("*.jpg"))) == 6


def test_demo_then_prepare_end_to_end_and_overwrite(demo, capsys):
    imgs, out = demo / "imgs", demo / "ds"
    argv = ["data", "prepare", "--content", str(imgs / "content"), "--styles", str(imgs / "styles"),
            "--out", str(out), "--content-size", "48", "--style-size", "48", "--style-large-size", "64",
            "--images-per-shard", "2", "--no-progress"]
    assert main(argv + ["--", "--direct_num_workers=2"]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["matched"] == 12 == c["accepted"] and manifest["runtime"]["beam_args"] == ["--direct_num_workers=2"]
    assert all(c["style"][s] >= 1 for s in ("train", "eval", "unseen"))
    assert manifest["dataset_hash"] in printed and "matched 12" in printed

    # A different dataset in the same folder: refused with one line, exit 2.
    assert main(argv + ["--eval-fraction", "0.4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]

    # --overwrite replaces it, keeps files imfuse did not write, removes its stale shards.
    (out / "my notes.txt").write_text("keep me")
    old_shards = {s["path"] for k in manifest["shards"].values() for ss in k.values() for s in ss}
    assert main(argv + ["--images-per-shard", "100", "--overwrite"]) == 0
    new = json.loads((out / "manifest.json").read_text())
    new_shards = {s["path"] for k in new["shards"].values() for ss in k.values() for s in ss}
    assert (out / "my notes.txt").read_text() == "keep me"
    assert all(not (out / p).exists() for p in old_shards - new_shards)
    assert all((out / p).exists() for p in new_shards)
    assert new["dataset_hash"] != manifest["dataset_hash"]


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "prepare", "--content", "{tmp}/missing", "--styles", "{tmp}", "--out", "{tmp}/o"],
        ["data", "prepare", "--content", "{tmp}/*.nothing", "--styles", "{tmp}", "--out", "{tmp}/o"],
        ["data", "prepare", "--content", "{tmp}", "--styles", "{tmp}", "--out", "{tmp}/o", "--eval-fraction", "2"],
        ["data", "demo", "--out", "{tmp}/d", "--content", "0"],
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv):
    (tmp_path / "x.jpg").write_bytes(b"not really")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("imfuse: error:") and "Traceback" not in err[0]
