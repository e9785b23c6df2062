"""Background jobs with progress and cancel: the slow Gatys optimisation runs here.

One worker thread runs jobs in submission order (one optimisation at a time keeps a
small CPU machine responsive); the page polls a job's progress and may cancel it,
queued or running. A running job is stopped through its progress callback: the
callback raises `Cancelled` (imfuse.gatys.run_optimization propagates it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from imfuse.errors import ConfigError, ImfuseError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

# work(on_step) -> uint8 image; on_step(done, total) reports progress and may raise Cancelled.
Work = Callable[[Callable[[int, int], None]], np.ndarray]


class Cancelled(Exception):
    """Raised inside a job's progress callback once the job was cancelled."""


@dataclass
class Job:
    id: str
    total: int
    kind: str = "gatys"  # what the page calls it: "gatys" (optimisation) or "fit" (fitting a style)
    state: str = QUEUED
    done: int = 0
    error: str | None = None
    result: np.ndarray | None = None
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "error": self.error}


class JobManager:
    """Runs Work callables one at a time and keeps the last `keep` jobs for polling."""

    def __init__(self, keep: int = 20, max_queued: int = 8):
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imfuse-studio-job")
        self.keep, self.max_queued = keep, max_queued

    def submit(self, work: Work, total: int, kind: str = "gatys") -> Job:
        with self._lock:
            pending = sum(1 for j in self._jobs.values() if j.state in (QUEUED, RUNNING))
            if pending >= self.max_queued:
                raise ConfigError(f"{pending} optimisations are already waiting; cancel one or try again later")
            job = Job(uuid.uuid4().hex[:16], total, kind)
            self._jobs[job.id] = job
            self._prune()
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel_requested.set()
        with self._lock:
            if job.state == QUEUED:
                job.state, job.finished = CANCELLED, time.monotonic()
        return job

    def wait(self, job_id: str, timeout: float = 30.0) -> Job | None:
        """Block until the job has finished (tests and scripts); None if unknown."""
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while job is not None and job.state not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.05)
        return job

    def shutdown(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel_requested.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINISHED]
        while len(self._jobs) > self.keep and finished:
            self._jobs.pop(finished.pop(0).id, None)

    def _run(self, job: Job, work: Work) -> None:
        with self._lock:
            if job.state == CANCELLED:
                return
            job.state = RUNNING

        def on_step(done: int, total: int) -> None:
            job.done, job.total = done, total
            if job.cancel_requested.is_set():
                raise Cancelled()

        try:
            on_step(0, job.total)
            image = work(on_step)
        except Cancelled:
            job.state = CANCELLED
        except ImfuseError as exc:
            job.state, job.error = FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - shown as one line on the page, never a traceback
            job.state, job.error = FAILED, f"internal error: {type(exc).__name__}: {exc}"
        else:
            job.result, job.done, job.state = image, job.total, DONE
        job.finished = time.monotonic()
