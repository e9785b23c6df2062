"""The Beam ingest pipeline: match -> read -> validate -> dedupe -> split -> resize -> TFRecords.

Shape of the pipeline (one shuffle of image payloads, keyed by output shard):

    (kind, uri) --Reshuffle--> DecodeResize --ok--> ((kind, shard), record) --GroupByKey--> WriteShards
                                    |                      \\-- (kind, sha) -> Distinct -> ToList -> splits (side input)
                                    \\--quarantine-----------------------------------------\\
                                                                        shards, duplicates -> ToList -> stash

A record's shard is a function of its content hash, so byte-identical files meet in the
same group, where the one with the smallest URI is kept and the others are counted as
duplicates. Shard file names and the order of examples inside them depend only on the
hashes: the same input gives byte-identical shards on any runner. The driver turns the
stash into `quarantine.jsonl` and `manifest.json` (written last, so a dataset without a
manifest is an incomplete one). Local files whose names are not valid UTF-8 never enter
the pipeline (Beam's string coder refuses them); the driver quarantines them.

All of it is written into a staging folder and swapped in at the end, under a lock on
OUT (imfuse.data.staging): a failed, killed or concurrent rerun leaves the previous
dataset readable, never a mix of two.

Runners: DirectRunner by default (set explicitly, in-memory FnApiRunner, one worker per core);
`runner="FlinkRunner" | "SparkRunner" | "DataflowRunner"` and any other Beam flags in
`beam_args` go to `PipelineOptions` untouched.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field

from imfuse import __version__
from imfuse.data import manifest as mf
from imfuse.data import staging
from imfuse.beam_jobs import Progress, import_beam, make_runner, pipeline_options, read_json, write_bytes
from imfuse.data.examples import KINDS, SPLITS
from imfuse.data.sources import is_utf8, match_sources, printable_uri
from imfuse.data.split import SPLIT_SALT
from imfuse.data.transforms import (
    WorkerOptions,
    assign_all,
    bad_name_entry,
    decode_resize_dofn,
    write_shards_dofn,
    write_stash,
)
from imfuse.errors import ConfigError, DataError
from imfuse.images import ImageLimits

log = logging.getLogger("imfuse.data")

STASH = ".imfuse-ingest.json"
# Written by imfuse (the .tmp names by versions before staging): never carried into a new dataset.
OWNED_FILES = (mf.MANIFEST, mf.QUARANTINE, STASH, staging.INNER_LOCK, mf.MANIFEST + ".tmp", mf.QUARANTINE + ".tmp")
IMAGE_FORMATS = ("png", "jpeg")


@dataclass
class PrepareConfig:
    """Options of `imfuse data prepare`; sizes are the shorter side in pixels."""

    content: str
    styles: str
    out: str
    runner: str = "DirectRunner"
    beam_args: list[str] = field(default_factory=list)
    content_size: int = 256
    style_size: int = 256
    style_large_size: int = 512
    eval_fraction: float = 0.1
    unseen_fraction: float = 0.2
    max_pixels: int = 64_000_000
    min_side: int = 16
    max_bytes: int = 64 * 1024 * 1024
    image_format: str = "png"
    images_per_shard: int = 200
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> None:
        for name in ("content_size", "style_size", "style_large_size", "images_per_shard"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.min_side < 1 or self.max_pixels < self.min_side**2 or self.max_bytes < 1:
            raise ConfigError(
                f"bad image limits: min_side={self.min_side}, max_pixels={self.max_pixels}, "
                f"max_bytes={self.max_bytes}"
            )
        for name in ("eval_fraction", "unseen_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if self.eval_fraction + self.unseen_fraction >= 1.0:
            raise ConfigError(
                f"eval_fraction + unseen_fraction must leave images for training, got "
                f"{self.eval_fraction} + {self.unseen_fraction}"
            )
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"image_format must be one of {IMAGE_FORMATS}, got '{self.image_format}'")
        if not self.out:
            raise ConfigError("an output folder is required")

    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.max_pixels, min_side=self.min_side, max_bytes=self.max_bytes)

    def fractions(self, kind: str) -> dict[str, float]:
        if kind == "style":
            return {"unseen": self.unseen_fraction, "eval": self.eval_fraction}
        return {"eval": self.eval_fraction}

    def hashed_options(self) -> dict:
        """Options that change the dataset's content (part of the dataset hash)."""
        names = ("eval_fraction", "unseen_fraction", "max_pixels", "min_side", "max_bytes", "image_format",
                 "images_per_shard")
        return {**{name: getattr(self, name) for name in names}, "split_salt": SPLIT_SALT}


# ------------------------------------------------------------------------- the driver


def _fingerprint(items: list[tuple[str, str]], cfg: PrepareConfig) -> str:
    body = {"inputs": items, "options": cfg.hashed_options(), "sizes": _sizes(cfg)}
    return hashlib.sha256(mf.canonical_json(body)).hexdigest()


def _sizes(cfg: PrepareConfig) -> dict:
    return {"content": cfg.content_size, "style": cfg.style_size, "style_large": cfg.style_large_size}


def _check_output_dir(out: str, fingerprint: str, overwrite: bool) -> dict | None:
    """Refuse to mix datasets; return the old manifest (whose shards the new one replaces) if any."""
    from apache_beam.io.filesystems import FileSystems

    manifest_path = FileSystems.join(out, mf.MANIFEST)
    if FileSystems.exists(manifest_path):
        try:
            old = read_json(manifest_path)
        except Exception:  # noqa: BLE001 - unreadable: treat as a different dataset
            old = {}
        if not isinstance(old, dict) or not isinstance(old.get("inputs", {}), dict):  # JSON, but not a manifest
            old = {}
        if old.get("inputs", {}).get("fingerprint") != fingerprint and not overwrite:
            raise DataError(
                f"{out}: already holds a different dataset ({old.get('dataset_hash', 'unknown hash')}); "
                "pass --overwrite to replace it or choose another folder"
            )
        return old
    if staging.is_remote(out):
        return None
    if os.path.isdir(out):
        entries = [e for e in os.listdir(out) if e != STASH and not e.startswith(".imfuse-")]
        if entries and not overwrite:
            raise DataError(
                f"{out}: folder is not empty and holds no imfuse dataset; choose an empty folder "
                "or pass --overwrite (files imfuse did not write are kept)"
            )
    elif os.path.lexists(out):
        raise DataError(f"{out}: exists and is not a folder")
    return None


def _num_shards(n: int, per_shard: int) -> int:
    return max(1, min(1024, math.ceil(n / per_shard)))


def _resolve_out(out: str) -> str:
    """URIs without a trailing slash; local paths absolute with symlinks resolved, so the
    swap replaces the real folder and every run finds the same lock."""
    return out.rstrip("/") if staging.is_remote(out) else os.path.realpath(os.path.abspath(out))


def _shard_paths(manifest: dict | None) -> list[str]:
    shards = (manifest or {}).get("shards", {})
    return sorted(s["path"] for kind in shards.values() for ss in kind.values() for s in ss if "path" in s)


def prepare_dataset(cfg: PrepareConfig) -> dict:
    """Run the ingest pipeline for `cfg` and return the manifest it wrote.

    The dataset is built in a staging folder and swapped in at the end (see
    imfuse.data.staging), under a lock on OUT: a failed, killed or concurrent run leaves
    the previous dataset as it was.
    """
    cfg.validate()
    import_beam()
    started = time.monotonic()
    items = [("content", u) for u in match_sources(cfg.content)] + [("style", u) for u in match_sources(cfg.styles)]
    fingerprint = _fingerprint([(kind, printable_uri(u)) for kind, u in items], cfg)
    out = _resolve_out(cfg.out)
    with staging.output_lock(out):
        staging.recover(out)
        old = _check_output_dir(out, fingerprint, cfg.overwrite)
        stage = staging.begin(out)
        try:
            manifest = _build(cfg, stage.path, items, fingerprint)
            new_files = _shard_paths(manifest) + [mf.QUARANTINE, mf.MANIFEST]  # manifest last
            staging.commit(stage, new_files, _shard_paths(old), OWNED_FILES)
        except BaseException:
            staging.abort(stage)
            raise
    log.info(
        "ingest: %d accepted, %d quarantined, %d duplicates in %.1f s; %s",
        manifest["counts"]["accepted"],
        manifest["counts"]["quarantined"],
        manifest["counts"]["duplicates"],
        time.monotonic() - started,
        manifest["dataset_hash"],
    )
    return manifest


def _build(cfg: PrepareConfig, dest: str, items: list[tuple[str, str]], fingerprint: str) -> dict:
    """Run the pipeline into `dest` (a staging folder) and write its manifest there.

    Files whose names are not valid UTF-8 cannot enter the pipeline (Beam's string coder
    refuses them): they are quarantined here, like any other bad file.
    """
    from apache_beam.io.filesystems import FileSystems

    matched = {kind: sum(1 for k, _ in items if k == kind) for kind in KINDS}
    num_shards = {kind: _num_shards(n, cfg.images_per_shard) for kind, n in matched.items()}
    bad_names = [bad_name_entry(kind, u) for kind, u in items if not is_utf8(u)]
    items = [(kind, u) for kind, u in items if is_utf8(u)]
    stash_path = FileSystems.join(dest, STASH)
    runner_name = _run_pipeline(cfg, items, dest, num_shards, stash_path)
    try:
        stash = read_json(stash_path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{stash_path}: the pipeline finished without its results ({exc})") from None
    stash["quarantine"] = sorted(stash["quarantine"] + bad_names, key=lambda v: json.dumps(v, sort_keys=True))

    manifest = build_manifest(cfg, matched, stash, fingerprint, num_shards, runner_name)
    # Plain writes: nobody reads the staging folder before the commit.
    write_bytes(FileSystems.join(dest, mf.QUARANTINE), "".join(
        json.dumps(q, ensure_ascii=False, sort_keys=True) + "\n" for q in stash["quarantine"]
    ).encode("utf-8"))
    write_bytes(FileSystems.join(dest, mf.MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    FileSystems.delete([stash_path])
    return manifest


def _run_pipeline(cfg: PrepareConfig, items: list, dest: str, num_shards: dict, stash_path: str) -> str:
    """The Beam pipeline (module docstring); writes shards and the stash under `dest`."""
    beam = import_beam()
    progress = Progress(len(items), cfg.progress, desc="ingest", unit="img")
    opts = WorkerOptions(
        sizes=_sizes(cfg),
        limits=cfg.limits(),
        image_format=cfg.image_format,
        num_shards=num_shards,
        progress=progress,
    )
    options, runner_name = pipeline_options(cfg.runner, cfg.beam_args)
    counts = {kind: sum(1 for k, _ in items if k == kind) for kind in KINDS}
    log.info("ingest: %d content + %d style files matched; runner %s", counts["content"], counts["style"], runner_name)
    try:
        with beam.Pipeline(runner=make_runner(runner_name), options=options) as p:
            processed = (
                p
                | "Match" >> beam.Create(items)
                | "Distribute" >> beam.Reshuffle()
                | "DecodeResize" >> beam.ParDo(decode_resize_dofn()(opts)).with_outputs("quarantine", main="ok")
            )
            splits = (
                processed.ok
                | "KindSha" >> beam.Map(lambda kv: (kv[1]["kind"], kv[1]["sha256"]))
                | "DistinctSha" >> beam.Distinct()
                | "AllShas" >> beam.combiners.ToList()
                | "AssignSplits" >> beam.Map(assign_all, {kind: cfg.fractions(kind) for kind in KINDS})
            )
            written = (
                processed.ok
                | "GroupByShard" >> beam.GroupByKey()
                | "WriteShards"
                >> beam.ParDo(write_shards_dofn()(dest, num_shards), beam.pvalue.AsSingleton(splits)).with_outputs(
                    "duplicates", main="shards"
                )
            )
            _ = (
                (
                    written.shards | "TagShards" >> beam.Map(lambda v: ("shard", v)),
                    written.duplicates | "TagDuplicates" >> beam.Map(lambda v: ("duplicate", v)),
                    processed.quarantine | "TagQuarantine" >> beam.Map(lambda v: ("quarantine", v)),
                )
                | "Results" >> beam.Flatten()
                | "CollectResults" >> beam.combiners.ToList()
                | "WriteStash" >> beam.Map(write_stash, stash_path)
            )
    finally:
        progress.close()
    return runner_name


def build_manifest(
    cfg: PrepareConfig, matched: dict, stash: dict, fingerprint: str, num_shards: dict, runner_name: str
) -> dict:
    """Assemble manifest.json from the pipeline's results (see imfuse.data.manifest);
    `matched` counts the matched files of each kind."""
    import apache_beam as beam

    counts: dict = {}
    shards: dict = {kind: {split: [] for split in SPLITS[kind]} for kind in KINDS}
    for entry in sorted(stash["shard"], key=lambda s: s["path"]):
        shards[entry["kind"]][entry["split"]].append(
            {k: entry[k] for k in ("path", "examples", "bytes", "sha256")}
        )
    for kind in KINDS:
        per_split = {split: sum(s["examples"] for s in shards[kind][split]) for split in SPLITS[kind]}
        counts[kind] = {
            "matched": matched[kind],
            "accepted": sum(per_split.values()),
            "quarantined": sum(1 for q in stash["quarantine"] if q["kind"] == kind),
            "duplicates": sum(1 for d in stash["duplicate"] if d["kind"] == kind),
            **per_split,
        }
    for key in ("matched", "accepted", "quarantined", "duplicates"):
        counts[key] = sum(counts[kind][key] for kind in KINDS)
    counts["quarantined_by_reason"] = mf.reason_counts(stash["quarantine"])
    if counts["matched"] != counts["accepted"] + counts["quarantined"] + counts["duplicates"]:
        raise DataError(f"ingest lost files: counts {counts} break matched = accepted + quarantined + duplicates")
    manifest = {
        "format": mf.FORMAT,
        "counts": counts,
        "shards": shards,
        "num_shards": num_shards,
        "image_sizes": {kind: {"shorter_side": size} for kind, size in _sizes(cfg).items()},
        "options": cfg.hashed_options(),
        "features": {
            "image": f"bytes ({cfg.image_format.upper()}, RGB, shorter side = image_sizes[kind])",
            "height": "int64",
            "width": "int64",
            "source": "bytes (URI)",
            "sha256": "bytes (hex SHA-256 of the original file)",
            "split": "bytes (train/eval/unseen)",
            "kind": "bytes (content/style)",
            "image_large": "bytes (style only: image_sizes.style_large)",
            "height_large": "int64 (style only)",
            "width_large": "int64 (style only)",
        },
        "duplicates": stash["duplicate"],
        "inputs": {"content": cfg.content, "styles": cfg.styles, "fingerprint": fingerprint},
        "runtime": {
            "beam_version": beam.__version__,
            "imfuse_version": __version__,
            "runner": runner_name,
            "beam_args": list(cfg.beam_args),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    manifest["image_sizes"]["style_large"]["feature"] = "image_large"
    manifest["dataset_hash"] = mf.dataset_hash(manifest)
    return manifest
