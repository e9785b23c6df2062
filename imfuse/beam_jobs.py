"""What imfuse's Beam jobs share: a quiet import and runner options (every job), and for
the batch stylisation jobs (images: batch_stylize, videos: video_batch) their bookkeeping.

Each input ends as one outcome record, ("written", path, ...) or ("bad", path, reason),
which a worker writes as a small JSON file under OUT/.records (workers may be other
processes or machines: no shared driver state). When the pipeline is done the driver turns
them into OUT/quarantine.jsonl and OUT/summary.json (matched == written + quarantined).
Paths go through Beam's FileSystems, so OUT may be on gs:// or s3:// where the job allows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import sys
import threading
from collections import Counter
from typing import Any, Callable, Iterable

from imfuse.errors import ConfigError, DataError, ModelError

QUARANTINE_FILE = "quarantine.jsonl"
SUMMARY_FILE = "summary.json"
RECORDS_DIR = ".records"


def _hide_workers_warning(record: logging.LogRecord) -> bool:
    """Beam warns that the in_memory mode ignores direct_num_workers, but here it does
    not (bench/ingest.py: 12.4 s with 1 worker, 7.1 s with 2 on 400 files), so the
    warning would only mislead users of the default DirectRunner settings."""
    return "direct_running_mode should be" not in record.getMessage()


def import_beam():
    """Import and return `apache_beam` (with its filesystems), quietly, once. Some Beam modules
    log warnings at import time when optional GCP libraries are missing, which also installs a
    root stderr handler that would pass every later Beam log line to the user; a temporary
    root handler swallows them and leaves the root logger as it was."""
    if "apache_beam.io.filesystems" in sys.modules:
        import apache_beam

        return apache_beam
    logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(_hide_workers_warning)
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        import apache_beam
        import apache_beam.io.filesystems  # noqa: F401 - triggers the noisy GCP imports
    finally:
        root.removeHandler(guard)
    return apache_beam


DIRECT_NAMES = ("DirectRunner", "direct", "FnApiRunner")


def pipeline_options(runner: str, beam_args: list[str]):
    """PipelineOptions with the runner set explicitly; DirectRunner gets local defaults."""
    import_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in flags):
        flags += [f"--runner={runner}"]
    effective = runner
    for i, a in enumerate(flags):
        if a.startswith("--runner="):
            effective = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(flags):
            effective = flags[i + 1]
    if effective in DIRECT_NAMES:
        # in_memory skips the local gRPC data plane that multi_threading pushes every
        # encoded image through: 0.73x vs 0.65x of a bare Pillow pool on 400 files
        # (bench/ingest.py); the per-image Pillow work releases the GIL either way.
        defaults = {"--direct_num_workers": max(1, os.cpu_count() or 1), "--direct_running_mode": "in_memory"}
        flags += [f"{name}={value}" for name, value in defaults.items() if not any(a.startswith(name) for a in flags)]
    try:
        options = PipelineOptions(flags)
        options.get_all_options()  # parse now: malformed flags fail here, not mid-run
    except SystemExit:  # argparse inside Beam exits on malformed flags
        raise ConfigError(f"invalid Beam pipeline options: {' '.join(beam_args)}") from None
    return options, effective


def make_runner(name: str):
    """The runner object for `name`. DirectRunner means Beam's local FnApiRunner, chosen
    directly: Beam's DirectRunner would first try to download the Prism binary, which
    fails (or hangs) offline. Other names are resolved by Beam itself."""
    if name in DIRECT_NAMES:
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        return fn_runner.FnApiRunner()
    return None


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0] or "image"


def colliding_stems(paths: Iterable[str]) -> frozenset[str]:
    return frozenset(stem for stem, n in Counter(map(_stem, paths)).items() if n > 1)


def output_stem(path: str, colliding: frozenset[str]) -> str:
    """The input's stem; stems shared by several inputs get a short hash of the path to stay unique."""
    stem = _stem(path)
    return f"{stem}-{hashlib.sha1(path.encode()).hexdigest()[:8]}" if stem in colliding else stem


def open_job(style: str, input_glob: str, output: str) -> tuple[bytes, str, list[str], frozenset[str]]:
    """A batch job's start: (style bytes, style name, input paths, colliding stems), with a bad
    style, no matching input or an output that cannot be made refused before any work."""
    from apache_beam.io.filesystems import FileSystems

    from imfuse.images import decode_image, read_source_bytes

    style_bytes, style_name = read_source_bytes(style)
    decode_image(style_bytes, style_name)
    paths = match_inputs(input_glob)
    try:
        if not FileSystems.exists(output):
            FileSystems.mkdirs(output)
        stale = _record_paths(output)  # a killed run's: not this run's outcomes
        if stale:
            FileSystems.delete(stale)
    except Exception as exc:  # noqa: BLE001 - any filesystem's own error
        raise DataError(f"cannot create output directory {output}: {exc}") from None
    return style_bytes, style_name, paths, colliding_stems(paths)


def match_inputs(glob: str) -> list[str]:
    """The files `glob` matches (any Beam filesystem), sorted; none is a user error."""
    from apache_beam.io.filesystems import FileSystems

    try:
        results = FileSystems.match([glob])
    except Exception as exc:  # noqa: BLE001 - bad scheme, unreadable dir, ...
        raise DataError(f"cannot list {glob}: {exc}") from None
    paths = sorted(m.path for r in results for m in r.metadata_list)
    if not paths:
        raise DataError(f"no files match {glob}")
    return paths


def last_line(message: str) -> str:
    """The informative last line of a runner's or TensorFlow's long, nested message."""
    lines = [ln.strip() for ln in (message or "").splitlines() if ln.strip() and not ln.strip().startswith("[[")]
    return lines[-1] if lines else "invalid image"


def pipeline_failed(what: str, exc: Exception) -> ModelError:
    return ModelError(f"{what} pipeline failed: {type(exc).__name__}: {last_line(str(exc))[:500]}")


class Progress:
    """One tqdm bar per process, advanced as inputs are finished, with the count of bad
    ones beside it. Beam hands each worker thread its own copy of this object, so the bar
    lives in the process, under a key."""

    def __init__(self, total: int, enabled: bool, desc: str, unit: str):
        self.total, self.enabled, self.desc, self.unit = total, enabled, desc, unit
        self.key = os.urandom(8).hex()

    def __call__(self, record):
        """For a Map over outcome records: ("bad", ...) counts as quarantined."""
        self.tick(ok=record[0] != "bad")
        return record

    def tick(self, ok: bool = True) -> None:
        if not self.enabled:
            return
        with _BARS_LOCK:
            bar = _BARS.get(self.key)
            if bar is None:
                from tqdm import tqdm

                bar = _BARS[self.key] = tqdm(total=self.total, desc=self.desc, unit=self.unit, mininterval=0.5)
                bar.bad = 0
            if not ok:
                bar.bad += 1
                bar.set_postfix(quarantined=bar.bad, refresh=False)
            bar.update(1)

    def close(self) -> None:
        with _BARS_LOCK:
            bar = _BARS.pop(self.key, None)
        if bar is not None:
            bar.close()


_BARS: dict = {}
_BARS_LOCK = threading.Lock()


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file through Beam's FileSystems (local, gs://, s3://; not atomic)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as fh:
        fh.write(data)


def read_json(path: str) -> Any:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        return json.loads(fh.read().decode("utf-8"))


def write_record(record: tuple, output: str, fields: tuple[str, ...] = ()) -> None:
    """One input's outcome as OUT/.records/<hash of its path>.json; `fields` name what a
    "written" record carries after its path."""
    from apache_beam.io.filesystems import FileSystems

    status, path = record[0], record[1]
    entry: dict[str, Any] = {"status": status, "source": path}
    entry.update(zip(fields, record[2:]) if status == "written" else {"reason": record[2]})
    name = hashlib.sha1(path.encode()).hexdigest()[:16] + ".json"
    write_bytes(FileSystems.join(output, RECORDS_DIR, name), json.dumps(entry).encode())


def finish(output: str, summary: dict[str, Any], matched: int,
           totals: Callable[[list[dict]], dict] | None = None) -> dict[str, Any]:
    """Records -> OUT/quarantine.jsonl (sorted by source) and OUT/summary.json (with what
    `totals` makes of the "written" records); returns the summary."""
    from apache_beam.io.filesystems import FileSystems

    paths = _record_paths(output)
    records = [read_json(path) for path in paths]
    written = [r for r in records if r["status"] == "written"]
    bad = sorted((r for r in records if r["status"] == "bad"), key=lambda r: r["source"])
    lines = "".join(json.dumps({"source": r["source"], "reason": r["reason"]}, ensure_ascii=False) + "\n" for r in bad)
    summary = {**summary, "matched": matched, "written": len(written), "quarantined": len(bad),
               **(totals(written) if totals else {})}
    for name, text in ((QUARANTINE_FILE, lines), (SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")):
        write_bytes(FileSystems.join(output, name), text.encode("utf-8"))
    if paths:
        FileSystems.delete(paths)
    if FileSystems.exists(FileSystems.join(output, RECORDS_DIR)):  # local folders (object stores have none)
        FileSystems.delete([FileSystems.join(output, RECORDS_DIR)])
    return summary


def _record_paths(output: str) -> list[str]:
    """The outcome records under OUT, by file (object stores have no folders to test or delete)."""
    from apache_beam.io.filesystems import FileSystems

    return [m.path for m in FileSystems.match([FileSystems.join(output, RECORDS_DIR, "*.json")])[0].metadata_list]
