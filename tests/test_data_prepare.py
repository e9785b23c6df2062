"""imfuse.data.prepare: the Beam pipeline, run once (twice for determinism) on a corpus of
real images plus broken and awkward files; many assertions on that one output."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import downscale_copies, make_bad_images, make_good_images
from imfuse.data.examples import decode_example, read_tfrecords
from imfuse.data.manifest import HASHED_KEYS, canonical_json, dataset_hash, read_manifest
from imfuse.beam_jobs import pipeline_options
from imfuse.data.prepare import PrepareConfig, prepare_dataset
from imfuse.errors import ConfigError, DataError
from imfuse.images import flatten_alpha, open_validated, resize_pil_shorter

SIZES = {"content": 64, "style": 48, "style_large": 96}
EXPECTED_CODES = {
    "empty.jpg": "empty",
    "truncated.jpg": "truncated",
    "text.jpg": "not_an_image",
    "random.png": "not_an_image",
    "bad_crc.png": "corrupt",
    "bomb.png": "too_large",
    "drawing.svg": "not_an_image",
    "tiny.png": "too_small",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("ingest")
    content, styles = root / "src" / "content", root / "src" / "styles"
    real = downscale_copies(shared_data / "content", content, shorter=80, limit=5)
    downscale_copies(shared_data / "styles", styles, shorter=80, limit=6)
    shutil.copy(real[0], content / f"zz duplicate of {real[0].name}")  # byte-identical
    for name, data in make_bad_images().items():
        (content / name).write_bytes(data)
    for name, (data, _) in make_good_images().items():
        (styles / name).write_bytes(data)
    (content / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: never matched
    cfg = dict(
        content=str(content), styles=str(styles), content_size=SIZES["content"],
        style_size=SIZES["style"], style_large_size=SIZES["style_large"], progress=False,
        images_per_shard=4,
    )
    first = prepare_dataset(PrepareConfig(out=str(root / "out1"), **cfg))
    second = prepare_dataset(
        PrepareConfig(out=str(root / "out2"), beam_args=["--direct_num_workers=1"], **cfg)
    )
    return {"root": root, "content": content, "styles": styles, "m1": first, "m2": second,
            "out1": root / "out1", "out2": root / "out2", "real": real, "cfg": cfg}


def _examples(out: Path, manifest: dict) -> list[dict]:
    found = []
    for kind, splits in manifest["shards"].items():
        for split, shards in splits.items():
            for shard in shards:
                with open(out / shard["path"], "rb") as fh:
                    for record in read_tfrecords(fh, shard["path"]):
                        ex = decode_example(record)
                        ex["_file"] = (kind, split)
                        found.append(ex)
    return found


def test_counts_invariant_and_exact_numbers(run):
    c = run["m1"]["counts"]
    for scope in (c, c["content"], c["style"]):
        assert scope["matched"] == scope["accepted"] + scope["quarantined"] + scope["duplicates"]
    bad, good = len(make_bad_images()), len(make_good_images())
    assert c["content"]["matched"] == 5 + 1 + bad  # .DS_Store not matched
    assert (c["content"]["accepted"], c["content"]["quarantined"], c["content"]["duplicates"]) == (5, bad, 1)
    # Two corpus files are byte-identical PNGs under different names: one style duplicate.
    distinct = len({hashlib.sha256(p.read_bytes()).digest() for p in run["styles"].iterdir()})
    assert distinct == 6 + good - 1
    assert (c["style"]["matched"], c["style"]["accepted"], c["style"]["quarantined"]) == (6 + good, distinct, 0)
    assert c["style"]["duplicates"] == 1
    assert c["content"]["train"] + c["content"]["eval"] == 5
    assert c["style"]["train"] + c["style"]["eval"] + c["style"]["unseen"] == distinct
    assert all(c["style"][s] >= 1 for s in ("train", "eval", "unseen"))
    assert c["content"]["train"] >= 1 and c["content"]["eval"] >= 1


def test_quarantine_file_reasons(run):
    lines = (run["out1"] / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    by_name = {Path(e["source"]).name: e for e in entries}
    assert set(by_name) == set(EXPECTED_CODES)
    for name, code in EXPECTED_CODES.items():
        assert by_name[name]["code"] == code, by_name[name]
        assert by_name[name]["reason"] and str(run["content"]) not in by_name[name]["reason"]
    assert run["m1"]["counts"]["quarantined_by_reason"] == {
        "corrupt": 1, "empty": 1, "not_an_image": 3, "too_large": 1, "too_small": 1, "truncated": 1
    }


def test_duplicate_is_counted_and_named(run):
    (dup,) = [d for d in run["m1"]["duplicates"] if d["kind"] == "content"]
    assert Path(dup["source"]).name.startswith("zz duplicate")
    assert dup["duplicate_of"] == str(run["real"][0]) and dup["kind"] == "content"


def test_round_trip_examples_decode_to_the_stored_pixels(run):
    examples = _examples(run["out1"], run["m1"])
    assert len(examples) == run["m1"]["counts"]["accepted"]
    sources = set()
    for ex in examples:
        kind, split = ex["_file"]
        assert ex["kind"] == [kind.encode()] and ex["split"] == [split.encode()]
        source = ex["source"][0].decode("utf-8")
        sources.add(source)
        data = Path(source).read_bytes()
        assert ex["sha256"] == [hashlib.sha256(data).hexdigest().encode()]
        expected = flatten_alpha(open_validated(data, source))
        pairs = [("image", "height", "width", SIZES[kind])]
        if kind == "style":
            pairs.append(("image_large", "height_large", "width_large", SIZES["style_large"]))
        for key, hkey, wkey, size in pairs:
            stored = np.asarray(Image.open(io.BytesIO(ex[key][0])))
            assert stored.shape == (ex[hkey][0], ex[wkey][0], 3)
            assert min(stored.shape[:2]) == size
            np.testing.assert_array_equal(stored, np.asarray(resize_pil_shorter(expected, size)))
    assert any(" " in s for s in sources) and any("ü" in s for s in sources)


def test_unseen_styles_never_in_train(run):
    examples = _examples(run["out1"], run["m1"])
    by_split = {}
    for ex in examples:
        if ex["kind"] == [b"style"]:
            by_split.setdefault(ex["split"][0].decode(), set()).add(ex["sha256"][0])
    assert by_split["unseen"] and by_split["train"]
    assert not by_split["unseen"] & by_split["train"]
    assert not by_split["unseen"] & by_split.get("eval", set())


def test_same_input_twice_gives_identical_shards_and_hash(run):
    m1, m2 = run["m1"], run["m2"]
    assert m1["dataset_hash"] == m2["dataset_hash"]
    assert m1["shards"] == m2["shards"]
    paths = [s["path"] for k in m1["shards"].values() for ss in k.values() for s in ss]
    assert len(paths) > 3  # images_per_shard=4 gives several shards
    for rel in paths:
        assert (run["out1"] / rel).read_bytes() == (run["out2"] / rel).read_bytes()
        assert hashlib.sha256((run["out1"] / rel).read_bytes()).hexdigest() == next(
            s["sha256"] for k in m1["shards"].values() for ss in k.values() for s in ss if s["path"] == rel
        )
    assert (run["out1"] / "quarantine.jsonl").read_bytes() == (run["out2"] / "quarantine.jsonl").read_bytes()
    hashed = canonical_json({k: m1.get(k) for k in HASHED_KEYS}).decode()
    assert str(run["out1"]) not in hashed and "created_at" not in hashed


def test_manifest_on_disk_is_valid_and_tamper_evident(run, tmp_path):
    manifest = read_manifest(run["out1"])
    assert manifest == run["m1"] and manifest["dataset_hash"] == dataset_hash(manifest)
    assert manifest["runtime"]["beam_version"] and manifest["runtime"]["runner"] == "DirectRunner"
    assert manifest["image_sizes"]["style_large"]["feature"] == "image_large"
    assert not (run["out1"] / ".imfuse-ingest.json").exists()
    tampered = dict(manifest, counts=dict(manifest["counts"], accepted=0))
    (tmp_path / "manifest.json").write_text(json.dumps(tampered))
    with pytest.raises(DataError, match="hash does not match"):
        read_manifest(tmp_path)
    with pytest.raises(DataError, match="no manifest"):
        read_manifest(tmp_path / "nowhere")


def test_output_dir_holding_a_different_dataset_is_refused(run):
    cfg = dict(run["cfg"], eval_fraction=0.3)
    with pytest.raises(DataError, match="different dataset.*--overwrite"):
        prepare_dataset(PrepareConfig(out=str(run["out1"]), **cfg))
    assert read_manifest(run["out1"])["dataset_hash"] == run["m1"]["dataset_hash"]  # untouched


def test_a_manifest_that_is_json_but_not_a_manifest_is_a_different_dataset(run, tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    for body in ("[1, 2]", '{"inputs": "x"}'):
        (out / "manifest.json").write_text(body)
        with pytest.raises(DataError, match="different dataset.*--overwrite"):
            prepare_dataset(PrepareConfig(out=str(out), **run["cfg"]))
        assert (out / "manifest.json").read_text() == body  # untouched


def test_bad_sources_and_options(run, tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        prepare_dataset(PrepareConfig(content=str(tmp_path / "nope"), styles=str(run["styles"]), out=str(tmp_path / "o")))
    for bad in (dict(eval_fraction=1.2), dict(eval_fraction=0.5, unseen_fraction=0.5),
                dict(content_size=0), dict(image_format="gif")):
        with pytest.raises(ConfigError):
            prepare_dataset(PrepareConfig(content="x", styles="y", out=str(tmp_path / "o"), **bad))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        prepare_dataset(PrepareConfig(content=str(run["content"]), styles=str(run["styles"]), out=str(tmp_path / "busy")))


def test_pipeline_options_pass_through_and_direct_defaults():
    options, runner = pipeline_options("DirectRunner", ["--direct_num_workers=3", "--job_name=x"])
    opts = options.get_all_options()
    assert runner == "DirectRunner" and opts["direct_num_workers"] == 3 and opts["job_name"] == "x"
    assert opts["direct_running_mode"] == "in_memory"
    options, runner = pipeline_options("DirectRunner", ["--runner", "FlinkRunner", "--flink_master=host:8081"])
    assert runner == "FlinkRunner" and options.get_all_options()["flink_master"] == "host:8081"
    assert "direct_num_workers=" not in " ".join(options.get_all_options(retain_unknown_options=True))


# ------------------------------------------- bad file names, failed and concurrent reruns

SMALL = dict(content_size=32, style_size=32, style_large_size=48, progress=False, images_per_shard=2)


@pytest.fixture(scope="module")
def small(tmp_path_factory, shared_data):
    """Three content and three style images, and a first dataset made from them."""
    root = tmp_path_factory.mktemp("small")
    downscale_copies(shared_data / "content", root / "content", shorter=48, limit=3)
    downscale_copies(shared_data / "styles", root / "styles", shorter=48, limit=3)
    return {"content": str(root / "content"), "styles": str(root / "styles")}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_readable(out: Path, manifest: dict) -> None:
    """The reader (imfuse.data.reader) finds every shard and the counts of `manifest`."""
    from imfuse.data.reader import count_examples, shard_paths

    assert read_manifest(out)["dataset_hash"] == manifest["dataset_hash"]
    for kind, split in (("content", "train"), ("style", "train")):
        assert count_examples(out, kind, split) == manifest["counts"][kind][split]
        total = 0
        for path in shard_paths(out, kind, split):
            with open(path, "rb") as fh:
                total += sum(1 for _ in read_tfrecords(fh, path))
        assert total == manifest["counts"][kind][split]


def _siblings(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name))


def test_file_name_that_is_not_utf8_is_quarantined_and_good_files_get_through(small, tmp_path):
    content = tmp_path / "content"
    shutil.copytree(small["content"], content)
    good_image = make_good_images()["pic.bmp"][0]  # a valid image: only its name is bad
    with open(os.path.join(os.fsencode(content), b"bad\xff.bmp"), "wb") as fh:
        fh.write(good_image)
    out = tmp_path / "out"
    manifest = prepare_dataset(PrepareConfig(content=str(content), styles=small["styles"], out=str(out), **SMALL))
    c = manifest["counts"]
    assert (c["content"]["matched"], c["content"]["accepted"], c["content"]["quarantined"]) == (4, 3, 1)
    assert c["quarantined_by_reason"] == {"bad_name": 1} and c["style"]["accepted"] == 3
    (entry,) = [json.loads(line) for line in (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    assert entry["source"] == str(content / "bad\\xff.bmp") and entry["code"] == "bad_name"
    assert "UTF-8" in entry["reason"] and entry["kind"] == "content"
    _assert_readable(out, manifest)


@pytest.mark.parametrize("stage", ["pipeline results", "swap"])
def test_rerun_failing_midway_leaves_the_previous_dataset(small, tmp_path, monkeypatch, stage):
    out = tmp_path / "out"
    first = prepare_dataset(PrepareConfig(content=small["content"], styles=small["styles"], out=str(out), **SMALL))
    before = _tree(out)

    def broken(*args, **kwargs):
        raise RuntimeError(f"injected failure in {stage}")

    if stage == "swap":
        monkeypatch.setattr("imfuse.fsutil.exchange", broken)
    else:  # shards of the new dataset are written by now, in the staging folder
        monkeypatch.setattr("imfuse.data.prepare.build_manifest", broken)
    rerun = dict(SMALL, images_per_shard=1, eval_fraction=0.3)  # other shards, other hash
    with pytest.raises(RuntimeError, match="injected"):
        prepare_dataset(PrepareConfig(content=small["content"], styles=small["styles"], out=str(out),
                                      overwrite=True, **rerun))
    assert _tree(out) == before and _siblings(out) == ["out"]
    _assert_readable(out, first)
    monkeypatch.undo()
    second = prepare_dataset(PrepareConfig(content=small["content"], styles=small["styles"], out=str(out),
                                           overwrite=True, **rerun))
    assert second["dataset_hash"] != first["dataset_hash"] and _siblings(out) == ["out"]
    _assert_readable(out, second)
    stale = {p for p in before if p.endswith(".tfrecord")} - set(_tree(out))
    assert stale and not any((out / p).exists() for p in stale)  # the old layout's shards are gone


_SLOW_RUN = """
import json, pathlib, sys, time
import imfuse.data.transforms as t
from imfuse.data.prepare import PrepareConfig, prepare_dataset
real, marker = t._example, pathlib.Path(sys.argv[1])
def slow(record, split):
    marker.write_text("writing shards")
    time.sleep(300)
    return real(record, split)
t._example = slow
prepare_dataset(PrepareConfig(**json.loads(sys.argv[2])))
"""


def test_concurrent_run_is_refused_and_a_killed_rerun_leaves_the_dataset_readable(small, tmp_path):
    out = tmp_path / "out"
    cfg = dict(content=small["content"], styles=small["styles"], out=str(out), **SMALL)
    first = prepare_dataset(PrepareConfig(**cfg))
    before = _tree(out)
    marker = tmp_path / "marker"
    rerun = dict(cfg, images_per_shard=1, overwrite=True)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(marker), json.dumps(rerun)])
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the slow rerun never started writing"
            time.sleep(0.2)
        # The rerun holds the lock and is writing shards: a third run is refused, in one line.
        with pytest.raises(DataError) as info:
            prepare_dataset(PrepareConfig(**dict(cfg, eval_fraction=0.3, overwrite=True)))
        holder = _lock_holder(out)
        assert str(info.value) == f"another imfuse prepare is writing {out} ({holder}); wait for it to finish"
        assert f"pid {proc.pid} on " in str(info.value)
        assert _tree(out) == before
    finally:
        proc.kill()
        proc.wait()
    assert _tree(out) == before  # killed mid-pipeline: the previous dataset as it was
    _assert_readable(out, first)
    tf = pytest.importorskip("tensorflow")
    from imfuse.data.reader import make_dataset

    batch = next(iter(make_dataset(out, "style", "train", batch_size=1, image_size=32, training=False, repeat=False)))
    assert tuple(batch.shape) == (1, 32, 32, 3) and batch.dtype == tf.float32
    assert any(".staging-" in name for name in _siblings(out))  # what the killed run left

    again = prepare_dataset(PrepareConfig(**rerun))  # the next run cleans up after it
    assert _siblings(out) == ["out"]
    _assert_readable(out, again)


def _lock_holder(out: Path) -> str:
    return Path(str(out) + ".imfuse-prepare.lock").read_text().strip()


def test_mount_point_output_is_merged_in_place_with_the_manifest_last(small, tmp_path, monkeypatch):
    from imfuse.data import staging

    out = tmp_path / "mnt"
    monkeypatch.setattr(staging, "mode_for", lambda path: "merge")  # OUT cannot be renamed
    cfg = dict(content=small["content"], styles=small["styles"], out=str(out), **SMALL)
    first = prepare_dataset(PrepareConfig(**cfg))
    (out / "notes.txt").write_text("mine")
    before = _tree(out)
    monkeypatch.setattr("imfuse.data.prepare.build_manifest", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        prepare_dataset(PrepareConfig(**dict(cfg, images_per_shard=1, overwrite=True)))
    assert _tree(out) == before
    monkeypatch.undo()
    monkeypatch.setattr(staging, "mode_for", lambda path: "merge")
    second = prepare_dataset(PrepareConfig(**dict(cfg, images_per_shard=1, overwrite=True)))
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".imfuse-")]
    shards = {s["path"] for k in second["shards"].values() for ss in k.values() for s in ss}
    assert {p for p in _tree(out) if p.endswith(".tfrecord")} == shards
    _assert_readable(out, second)
    assert first["dataset_hash"] != second["dataset_hash"]


def test_merge_rerun_with_other_bytes_never_touches_the_listed_shards(small, tmp_path, monkeypatch):
    """Same shard count, other bytes: shards are named by their digest, so the previous dataset
    stays whole and readable up to the manifest's switch (object stores have no folder rename)."""
    from imfuse.data import staging

    out = tmp_path / "mnt"
    monkeypatch.setattr(staging, "mode_for", lambda path: "merge")
    cfg = dict(content=small["content"], styles=small["styles"], out=str(out), **SMALL)
    first = prepare_dataset(PrepareConfig(**cfg))
    changed = PrepareConfig(**dict(cfg, content_size=SMALL["content_size"] + 8, overwrite=True))
    real_replace = os.replace

    def killed_at_manifest(src, dst):
        if dst.endswith("manifest.json"):
            raise KeyboardInterrupt  # every new shard is in; the switch is next
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_manifest)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(changed)
    monkeypatch.setattr(os, "replace", real_replace)
    _assert_readable(out, first)
    listed = [s for k in first["shards"].values() for ss in k.values() for s in ss]
    for shard in listed:  # not one byte of the previous dataset changed
        assert hashlib.sha256((out / shard["path"]).read_bytes()).hexdigest() == shard["sha256"]
        assert shard["path"].endswith(f"-{shard['sha256'][:16]}.tfrecord")

    second = prepare_dataset(changed)
    assert second["num_shards"] == first["num_shards"] and second["dataset_hash"] != first["dataset_hash"]
    new = {s["path"] for k in second["shards"].values() for ss in k.values() for s in ss}
    paths = {kind: {s["path"] for ss in first["shards"][kind].values() for s in ss} for kind in ("content", "style")}
    assert new.isdisjoint(paths["content"])  # other content bytes: other names
    assert paths["style"] <= new  # the styles did not change: the same shards, kept
    assert {p for p in _tree(out) if p.endswith(".tfrecord")} == new  # the previous shards are gone
    _assert_readable(out, second)
