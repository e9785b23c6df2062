"""What `imfuse pipeline run --local` shows a person: one line per stage, the full logs in a file.

kfp.local prints everything it does to `sys.stdout`: its own records through the root
logger (`logging.info("Executing task ...")`, "Task ... finished with status ...", cache
hits and retries), each task's executor input/output JSON, and every line of the task's
subprocess, which SubprocessRunner reads from a pipe and `print`s in this process. For
the run, `capture` points `sys.stdout`/`sys.stderr` *and* file descriptors 1 and 2 at the
log file (so C-level writers, e.g. TensorFlow in this process, and anything holding the
original stream objects land there too), keeps a duplicate of the terminal for our own
lines, and watches kfp.local's records with a filter on the root logger (kfp.local
replaces the root logger's handlers inside each task, but not its filters).

When a task finishes, its line reads the task's outputs from the
`executor_output.json` kfp.local wrote under PIPELINE_ROOT/<run>/<task>/ (or from the
cache entry on a cache hit). On a terminal the running stage is a live line with the
elapsed time and the task's tqdm bar; elsewhere it is one "running ..." line.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TextIO

from imfuse.tracking import GATE_METRIC, TRAIN_IMAGES_PER_SECOND, TRAIN_LOSS, baseline_metric

# kfp task names (component names, `-N` suffixes removed) -> what the person reads.
STAGES = {
    "prepare-data": "prepare data",
    "train-model": "train",
    "train-distributed-model": "train",
    "evaluate-model": "evaluate",
    "register-model": "register",
    "export-deploy-model": "export + deploy",
}
LABEL_WIDTH = 16
TAIL_LINES = 30

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")  # a tqdm bar: "train:  45%|████▌   | 9/20 [...]"
_EVENTS = (
    ("start", re.compile(r"Executing task '([^']+)'")),
    ("finish", re.compile(r"Task '([^']+)' finished with status (\w+)")),
    ("cached", re.compile(r"Task (\S+) cache hit \(key=([0-9a-f]+)\)")),
    ("retry", re.compile(r"Task (\S+) failed \(attempt (\d+)/(\d+)\)\. Retrying in ([0-9.]+)s")),
    ("upstream", re.compile(r"Skipping task (\S+): upstream")),
)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def stage_kind(task: str) -> str:
    """'train-model-2' -> 'train-model' (kfp numbers repeated components)."""
    return re.sub(r"-\d+$", "", task)


def stage_label(task: str) -> str:
    kind = stage_kind(task)
    return STAGES.get(kind, kind)


def format_duration(seconds: float) -> str:
    """8s, 1m12s, 1h05m."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def stage_line(label: str, status: str, seconds: float | None = None, detail: str = "") -> str:
    """`  train            SUCCESS   1m12s  20 steps, loss 13985, 3.6 img/s`"""
    duration = format_duration(seconds) if seconds is not None else ""
    return f"  {label:<{LABEL_WIDTH}} {status:<8} {duration:>6}  {detail}".rstrip()


# ------------------------------------------------------------------ task outputs
@dataclass
class TaskOutputs:
    """A task's output parameters and its artefacts' metadata (name -> dict)."""

    parameters: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)

    def meta(self, artifact: str) -> dict:
        return self.artifacts.get(artifact) or {}


def _first_metadata(entry: dict | None) -> dict:
    """The metadata of the first artefact of an {"artifacts": [...]} list ({} without one)."""
    items = (entry or {}).get("artifacts") or [{}]
    return dict(items[0].get("metadata") or {})


def read_executor_output(path: str | os.PathLike) -> TaskOutputs:
    """The executor_output.json a kfp task writes ({"parameterValues", "artifacts"})."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    artifacts = {name: _first_metadata(entry) for name, entry in (data.get("artifacts") or {}).items()}
    return TaskOutputs(parameters=dict(data.get("parameterValues") or {}), artifacts=artifacts)


def read_cache_entry(path: str | os.PathLike) -> TaskOutputs:
    """A kfp.local cache entry (PIPELINE_ROOT/.kfp_cache/<key>.json): outputs by name."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = TaskOutputs()
    for name, value in data.items():
        if isinstance(value, dict) and value.get("__kfp_artifact__"):
            out.artifacts[name] = dict(value.get("metadata") or {})
        elif isinstance(value, dict) and value.get("__kfp_artifact_list__"):
            out.artifacts[name] = _first_metadata(value)
        else:
            out.parameters[name] = value
    return out


def _number(value, digits: int | None = None) -> str:
    v = float(value)
    if digits is not None:
        return f"{v:.{digits}f}"
    if v.is_integer() or abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _int(value) -> str:
    return str(int(float(value)))


def key_metric(task: str, outputs: TaskOutputs) -> str:
    """The one thing to know about a finished stage, from its outputs ('' when unknown)."""
    kind = stage_kind(task)
    try:
        if kind == "prepare-data":
            meta = outputs.meta("dataset")
            text = (f"{_int(meta['accepted'])} images accepted, {_int(meta.get('quarantined', 0))} quarantined, "
                    f"{_int(meta.get('duplicates', 0))} duplicates")
            return text + (" (demo data)" if meta.get("demo_data") else "")
        if kind in ("train-model", "train-distributed-model"):
            metrics, model = outputs.meta("metrics"), outputs.meta("model")
            parts = []
            if "steps" in model:
                parts.append(f"{_int(model['steps'])} steps")
            if TRAIN_LOSS in metrics:
                parts.append(f"loss {_number(metrics[TRAIN_LOSS])}")
            if TRAIN_IMAGES_PER_SECOND in metrics:
                parts.append(f"{_number(metrics[TRAIN_IMAGES_PER_SECOND], 1)} img/s")
            return ", ".join(parts)
        if kind == "evaluate-model":
            report, metrics = outputs.meta("report"), outputs.meta("metrics")
            verdict = "blessed" if is_blessed(outputs) else "NOT blessed"
            reason = report.get("reason")
            if not reason and GATE_METRIC in metrics:
                reason = f"{GATE_METRIC} {_number(metrics[GATE_METRIC])}"
                baseline = baseline_metric(GATE_METRIC)
                if baseline in metrics:
                    reason += f" vs baseline {_number(metrics[baseline])}"
            return f"{verdict}: {reason}" if reason else verdict
        if kind == "register-model":
            p = outputs.parameters
            aliases = ", ".join(a for a in str(p.get("aliases", "")).split(",") if a)
            return f"{p['registered_model']} version {_int(p['version'])}" + (f" ({aliases})" if aliases else "")
        if kind == "export-deploy-model":
            p = outputs.parameters
            return f"serving version {_int(p['serving_version'])} at {p['path']}"
    except (KeyError, TypeError, ValueError):
        return ""
    return ""


def is_blessed(outputs: TaskOutputs) -> bool | None:
    report = outputs.meta("report")
    value = report.get("blessed", outputs.parameters.get("Output"))
    return None if value is None else bool(value)


# ------------------------------------------------------------------ terminal
class _Terminal:
    """Our lines, on the real terminal (or whatever sys.stdout was); a live line on a TTY."""

    def __init__(self, stream: TextIO, tty: bool) -> None:
        self.stream, self.tty = stream, tty
        self.lock = threading.RLock()
        self._live = False

    def width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            return 80

    def line(self, text: str) -> None:
        self.raw(text + "\n")

    def live(self, text: str) -> None:
        if not self.tty:
            return
        with self.lock:
            self.stream.write("\r\x1b[K" + text[: max(10, self.width() - 1)])
            self.stream.flush()
            self._live = True

    def clear_live(self) -> None:
        with self.lock:
            if self._live:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._live = False

    def raw(self, text: str) -> None:
        with self.lock:
            self.clear_live()
            self.stream.write(text)
            self.stream.flush()


# ------------------------------------------------------------------ progress
class PipelineProgress(logging.Filter):
    """Turns kfp.local's records and the task output into stage lines on the terminal.

    Attach it as a filter of the root logger (`filter` never drops a record); feed it the
    text written to the log with `output`. Events can also be given directly to `event`
    (the tests do)."""

    def __init__(
        self,
        term: _Terminal,
        pipeline_root: str | os.PathLike,
        log_path: str | os.PathLike | None = None,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.term = term
        self.pipeline_root = Path(pipeline_root)
        self.log_path = Path(log_path) if log_path else None
        self.verbose = verbose
        self.clock = clock
        self.started = clock()
        self.current: str | None = None
        self.task_started = 0.0
        self.bar: str | None = None
        self.task_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.log_tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.failed: tuple[str, list[str]] | None = None
        self.stages: list[tuple[str, str, float | None, TaskOutputs | None]] = []  # task, status, s, outputs
        self._partial = ""
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -------------------------------------------------------------- kfp records
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self.event(record.getMessage())
        except Exception:  # noqa: BLE001 - never break kfp's logging for a summary line
            pass
        return True

    def event(self, message: str) -> None:
        """One kfp.local message ('Executing task ...', '... finished with status ...', ...)."""
        message = strip_ansi(message)
        for name, pattern in _EVENTS:
            m = pattern.search(message)
            if m:
                getattr(self, f"_on_{name}")(*m.groups())
                return

    def _on_start(self, task: str) -> None:
        self.current, self.task_started, self.bar = task, self.clock(), None
        self.task_tail.clear()
        if self.term.tty and not self.verbose:
            self._tick()
            self._start_ticker()
        else:
            self.term.line(f"  {stage_label(task):<{LABEL_WIDTH}} running ...")

    def _record(self, task: str, status: str, seconds: float | None, outputs: TaskOutputs | None = None,
                detail: str | None = None) -> None:
        """Remember a stage and write its line; the detail is its key metric unless given."""
        self.stages.append((task, status, seconds, outputs))
        if detail is None:
            detail = key_metric(task, outputs) if outputs else ""
        self.term.line(stage_line(stage_label(task), status, seconds, detail))

    def _on_finish(self, task: str, status: str) -> None:
        seconds = self.clock() - self.task_started if self.current == task else None
        self.current = None
        if status == "SUCCESS":
            self._record(task, "SUCCESS", seconds, self._outputs_of(task))
        else:
            self.failed = (task, list(self.task_tail))
            last = next((line.strip() for line in reversed(self.task_tail) if line.strip()), "")
            self._record(task, "FAILED", seconds, detail=last[:200])

    def _on_cached(self, task: str, key: str) -> None:
        outputs = None
        entries = sorted((self.pipeline_root / ".kfp_cache").glob(f"{key}*.json"))
        if entries:
            with contextlib.suppress(OSError, ValueError):
                outputs = read_cache_entry(entries[0])
        self._record(task, "CACHED", 0.0, outputs)

    def _on_retry(self, task: str, attempt: str, attempts: str, delay: str) -> None:
        self.term.line(f"  {'':<{LABEL_WIDTH}} retrying {stage_label(task)} in {format_duration(float(delay))} "
                       f"(attempt {int(attempt) + 1}/{attempts})")

    def _on_upstream(self, task: str) -> None:
        if stage_kind(task) not in STAGES:  # a skipped dsl.If group: its tasks are not reported one by one
            return
        self._record(task, "SKIPPED", None, detail="an earlier stage failed")

    def _outputs_of(self, task: str) -> TaskOutputs | None:
        """The newest PIPELINE_ROOT/<run>/<task>/executor_output.json (this run's)."""
        found = [p for p in self.pipeline_root.glob(f"*/{task}/executor_output.json") if p.is_file()]
        with contextlib.suppress(OSError, ValueError):  # ValueError: none found, or not JSON
            return read_executor_output(max(found, key=lambda p: p.stat().st_mtime))
        return None

    # -------------------------------------------------------------- task output
    def output(self, text: str) -> None:
        """Text that went to the log: remember the current task's last lines and its bar."""
        text = self._partial + text
        lines = re.split(r"\r\n|\r|\n", text)
        self._partial = lines.pop()
        for raw in lines:
            line = strip_ansi(raw)
            if line.startswith("    "):
                line = line[4:]  # kfp indents the task's lines by 4
            bar = _BAR.search(line)
            if bar:
                self.bar = line.strip()
            for tail in (self.task_tail, self.log_tail):
                if bar and tail and _BAR.search(tail[-1]):
                    tail[-1] = line  # one line per bar, not one per update
                else:
                    tail.append(line)

    # -------------------------------------------------------------- ticker
    def _tick(self) -> None:
        task = self.current
        if task is None:
            return
        elapsed = format_duration(self.clock() - self.task_started)
        text = f"  {stage_label(task):<{LABEL_WIDTH}} running  {elapsed:>6}"
        if self.bar:
            text += "  " + re.sub(r"\s{2,}", " ", self.bar)
        self.term.live(text)

    def _start_ticker(self) -> None:
        if self._ticker is not None:
            return

        def loop() -> None:
            while not self._stop.wait(1.0):
                with contextlib.suppress(Exception):
                    self._tick()

        self._ticker = threading.Thread(target=loop, name="imfuse-pipeline-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        self.term.clear_live()

    # -------------------------------------------------------------- for the runner
    def say(self, text: str) -> None:
        self.term.line(text)

    def stage(self, kind: str) -> tuple[str, str, float | None, TaskOutputs | None] | None:
        """The last recorded stage of that kind ('evaluate-model', ...)."""
        return next((entry for entry in reversed(self.stages) if stage_kind(entry[0]) == kind), None)

    def report_unblessed(self) -> None:
        """After a run whose evaluation refused the model: say register and export were skipped."""
        evaluate = self.stage("evaluate-model")
        if evaluate and evaluate[3] is not None and is_blessed(evaluate[3]) is False:
            for kind in ("register-model", "export-deploy-model"):
                if self.stage(kind) is None:
                    self.say(stage_line(STAGES[kind], "SKIPPED", None, "not blessed"))

    def report_failure(self) -> None:
        """The failing task's last lines (else the log's) and where the full log is."""
        task, tail = self.failed if self.failed else (None, list(self.log_tail))
        while tail and not tail[-1].strip():
            tail.pop()
        what = f"the {stage_label(task)} stage" if task else "the log"
        lines = [f"Last {len(tail)} lines of {what}:"] if tail else []
        lines += [f"  | {line}" for line in tail]
        if self.log_path:
            lines.append(f"Full log: {self.log_path}")
        self.term.line("\n".join(lines))

    def elapsed(self) -> float:
        return self.clock() - self.started


class _LogStream(io.TextIOBase):
    """sys.stdout and sys.stderr during the run: the log file (and the terminal when verbose)."""

    def __init__(self, log: TextIO, progress: PipelineProgress, tee: _Terminal | None = None) -> None:
        super().__init__()
        self._log, self._progress, self._tee = log, progress, tee
        self._lock = threading.RLock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._log.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            text = str(text)
        with self._lock:
            self._log.write(strip_ansi(text))
            if self._tee is not None:
                self._tee.raw(text)
            with contextlib.suppress(Exception):
                self._progress.output(text)
        return len(text)

    def flush(self) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._log.flush()


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def new_log_path(workdir: str | os.PathLike) -> Path:
    """WORKDIR/logs/pipeline-<YYYYmmdd-HHMMSS>.log, made unique."""
    logs = Path(workdir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = logs / f"pipeline-{stamp}.log", 1
    while path.exists():
        n += 1
        path = logs / f"pipeline-{stamp}-{n}.log"
    return path


@contextlib.contextmanager
def capture(
    log_path: str | os.PathLike,
    pipeline_root: str | os.PathLike,
    verbose: bool = False,
    term: TextIO | None = None,
) -> Iterator[PipelineProgress]:
    """Everything written during the block (Python streams and fds 1 and 2) goes to
    `log_path`; the yielded PipelineProgress writes the stage lines to `term` (default: the
    current sys.stdout, however it is redirected). Restores all of it on the way out."""
    term = term if term is not None else sys.stdout
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr, term):
        with contextlib.suppress(Exception):
            stream.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved: dict[int, int] = {}
    for target in (1, 2):
        with contextlib.suppress(OSError):
            saved[target] = os.dup(target)
    # Our lines go where `term` writes; if that is fd 1 or 2, which now point at the log,
    # write to a duplicate of what they were.
    term_fd = _fileno(term)
    own_term = None
    if term_fd in saved:
        own_term = open(os.dup(saved[term_fd]), "w", buffering=1, encoding=getattr(term, "encoding", None) or "utf-8",
                        errors="replace")
    terminal = _Terminal(own_term or term, tty=_isatty(term))
    log = open(log_fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    progress = PipelineProgress(terminal, pipeline_root, log_path, verbose=verbose)
    stream = _LogStream(log, progress, tee=terminal if verbose else None)
    handler = logging.StreamHandler(stream)  # kfp.local's records outside its tasks (cache hits, retries)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    old_level, old_streams = root.level, (sys.stdout, sys.stderr)
    try:
        for target in saved:
            os.dup2(log_fd, target)
        sys.stdout = sys.stderr = stream
        root.addFilter(progress)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        yield progress
    finally:
        progress.close()
        root.removeFilter(progress)
        root.removeHandler(handler)
        root.setLevel(old_level)
        with contextlib.suppress(Exception):
            stream.flush()
        sys.stdout, sys.stderr = old_streams
        for target, dup in saved.items():
            os.dup2(dup, target)
            os.close(dup)
        with contextlib.suppress(Exception):
            log.close()
        os.close(log_fd)
        if own_term is not None:
            with contextlib.suppress(Exception):
                own_term.flush()
                own_term.close()
