"""Per-image work and the DoFns of the ingest pipeline (see `imfuse.data.prepare`).

Kept apart from the driver so Beam workers unpickle small, focused code, and so the
per-image step (`preprocess`) can be tested and benchmarked without Beam.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass

from imfuse.beam_jobs import Progress, write_bytes
from imfuse.data.examples import FEATURES, KINDS, LARGE_FEATURES, encode_example, tfrecord_frame
from imfuse.data.sources import printable_uri, read_uri_bytes
from imfuse.data.split import assign_splits
from imfuse.errors import ImageError
from imfuse.images import ImageLimits, encode_pil, flatten_alpha, open_validated, resize_pil_shorter

METRICS_NAMESPACE = "imfuse.ingest"


@dataclass(frozen=True)
class WorkerOptions:
    """The picklable part of the config that the DoFns need."""

    sizes: dict
    limits: ImageLimits
    image_format: str
    num_shards: dict
    progress: Progress  # the ingest bar (imfuse.beam_jobs), a no-op when disabled


# --------------------------------------------------------------------- per-image work


def reason_code(message: str) -> str:
    """Short category of an ImageError message, for counts by reason."""
    text = message.lower()
    for code, needles in (
        ("bad_name", ("not valid utf-8",)),
        ("empty", ("empty file",)),
        ("truncated", ("truncated",)),
        ("too_small", ("too small",)),
        ("too_large", ("declared size", "decompression bomb", "too large")),
        ("too_many_bytes", ("byte limit", "-byte limit")),
        ("not_an_image", ("not an image",)),
        ("unreadable", ("not found", "cannot read", "directory", "cannot download", "http ")),
        ("corrupt", ("corrupt", "cannot decode", "broken")),
    ):
        if any(n in text for n in needles):
            return code
    return "error"


BAD_NAME_REASON = "file name is not valid UTF-8 (rename the file to ingest it)"


def quarantine_entry(kind: str, source: str, reason: str) -> dict:
    return {"source": source, "reason": reason, "code": reason_code(reason), "kind": kind}


def bad_name_entry(kind: str, uri: str) -> dict:
    """The quarantine entry of a file whose name cannot enter the pipeline (see
    `sources.is_utf8`); same shape as DecodeResize's, with the name \\x-escaped."""
    return quarantine_entry(kind, printable_uri(uri), BAD_NAME_REASON)


def shard_of(sha256_hex: str, num_shards: int) -> int:
    return int(sha256_hex[:15], 16) % num_shards


def preprocess(data: bytes, uri: str, kind: str, opts: WorkerOptions) -> dict:
    """Validate, flatten alpha over white, resize and encode one image (ImageError if bad)."""
    im = flatten_alpha(open_validated(data, uri, opts.limits))
    small = resize_pil_shorter(im, opts.sizes[kind])
    record = {
        "kind": kind,
        "source": uri,
        "sha256": hashlib.sha256(data).hexdigest(),
        "image": encode_pil(small, opts.image_format),
        "height": small.height,
        "width": small.width,
    }
    if kind == "style":
        large = resize_pil_shorter(im, opts.sizes["style_large"])
        record.update(
            image_large=encode_pil(large, opts.image_format),
            height_large=large.height,
            width_large=large.width,
        )
    return record


def decode_resize_dofn():
    import apache_beam as beam
    from apache_beam.metrics import Metrics

    class DecodeResize(beam.DoFn):
        """Read one file; emit ((kind, shard), record) or a tagged quarantine entry."""

        def __init__(self, opts: WorkerOptions):
            self.opts = opts

        def setup(self):
            self.counters = {
                name: Metrics.counter(METRICS_NAMESPACE, name)
                for name in ("read", "accepted_before_dedupe", "quarantined")
            }

        def process(self, element):
            kind, uri = element
            self.counters["read"].inc()
            try:
                data = read_uri_bytes(uri, self.opts.limits)
                record = preprocess(data, uri, kind, self.opts)
            except Exception as exc:  # noqa: BLE001 - a bad file never stops the run
                message = str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"
                reason = message[len(uri) + 2 :] if message.startswith(f"{uri}: ") else message
                self.counters["quarantined"].inc()
                self.opts.progress.tick(ok=False)
                yield beam.pvalue.TaggedOutput("quarantine", quarantine_entry(kind, uri, reason))
                return
            self.counters["accepted_before_dedupe"].inc()
            self.opts.progress.tick()
            yield (kind, shard_of(record["sha256"], self.opts.num_shards[kind])), record

    return DecodeResize


def shard_name(kind: str, split: str, shard: int, num_shards: int, sha256_hex: str) -> str:
    """A shard's path in the dataset, named by its content's digest.

    A rerun that changes a shard's bytes therefore writes it under a new name, so on an
    object store (no atomic folder rename) the previous dataset's shards are never
    overwritten while its manifest still names them (imfuse.data.staging, merge mode).
    """
    return f"{kind}/{split}/part-{shard:05d}-of-{num_shards:05d}-{sha256_hex[:16]}.tfrecord"


def write_shards_dofn():
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    class WriteShards(beam.DoFn):
        """Dedupe one shard group, attach splits, write one TFRecord file per split."""

        def __init__(self, out: str, num_shards: dict):
            self.out = out
            self.num_shards = num_shards

        def process(self, element, splits):
            (kind, shard), records = element
            per_split: dict[str, list[dict]] = {}
            ordered = sorted(records, key=lambda r: (r["sha256"], r["source"]))
            for sha, (kept, *duplicates) in itertools.groupby(ordered, lambda r: r["sha256"]):  # smallest source kept
                for dup in duplicates:
                    yield beam.pvalue.TaggedOutput(
                        "duplicates",
                        {"source": dup["source"], "duplicate_of": kept["source"], "kind": kind},
                    )
                per_split.setdefault(splits[kind][sha], []).append(kept)
            for split, items in sorted(per_split.items()):
                payload = b"".join(tfrecord_frame(_example(r, split)) for r in items)
                digest = hashlib.sha256(payload).hexdigest()
                rel = shard_name(kind, split, shard, self.num_shards[kind], digest)
                write_bytes(FileSystems.join(self.out, rel), payload)
                yield {
                    "kind": kind,
                    "split": split,
                    "path": rel,
                    "examples": len(items),
                    "bytes": len(payload),
                    "sha256": digest,
                }

    return WriteShards


def _example(record: dict, split: str) -> bytes:
    names = FEATURES + (LARGE_FEATURES if record["kind"] == "style" else ())
    values = {name: record[name] for name in names if name != "split"}
    values["split"] = split
    return encode_example(values)


def assign_all(pairs: list, fractions: dict) -> dict:
    """{kind: {sha: split}} for the distinct (kind, sha) pairs of accepted images."""
    return {kind: assign_splits([sha for k, sha in pairs if k == kind], fractions[kind]) for kind in KINDS}


def write_stash(items: list, path: str) -> str:
    grouped: dict[str, list] = {"shard": [], "duplicate": [], "quarantine": []}
    for tag, value in items:
        grouped[tag].append(value)
    for values in grouped.values():
        values.sort(key=lambda v: json.dumps(v, sort_keys=True))
    write_bytes(path, json.dumps(grouped).encode("utf-8"))
    return path
