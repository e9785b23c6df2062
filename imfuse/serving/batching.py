"""Server-side batching: merge concurrent requests to the same signature into one run.

While a batch is executing, new requests wait up to `batch_timeout_micros` for peers
(or until `max_batch_size` rows are queued), run as one concatenated batch, and get
their own rows back; when nothing is executing a request goes at once (waiting could
only add latency). One graph
call per batch amortises per-call overhead and lets TensorFlow use all cores on
work that is serial per request (decode, encode), which is what gives the throughput
win on a small CPU box. A failing merged batch is re-run request by request, so one
client's corrupt image only fails that client.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Hashable

import grpc
import numpy as np

from imfuse.serving.config import BatchingOptions
from imfuse.serving.status import StatusError

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    size: int
    run: RunFn
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


def layout_key(inputs: dict[str, np.ndarray]) -> tuple:
    """Requests can share a batch only if names, dtypes and per-row shapes agree."""
    return tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))


def _split(outputs: dict[str, np.ndarray], sizes: list[int]) -> list[dict[str, np.ndarray]] | None:
    total = sum(sizes)
    if any(v.ndim == 0 or v.shape[0] != total for v in outputs.values()):
        return None  # an output without the batch dimension cannot be split back
    bounds = np.cumsum([0, *sizes])
    return [{k: v[bounds[i] : bounds[i + 1]] for k, v in outputs.items()} for i in range(len(sizes))]


def run_tasks(tasks: list[_Task]) -> None:
    """Run tasks as one batch and resolve their futures (falls back to one by one)."""
    parts = None
    if len(tasks) > 1:
        merged = {k: np.concatenate([t.inputs[k] for t in tasks], axis=0) for k in tasks[0].inputs}
        try:
            outputs = tasks[0].run(merged)
        except StatusError:
            outputs = None  # isolate the request(s) at fault
        except Exception as exc:  # noqa: BLE001 - never leave a client hanging
            for task in tasks:
                task.future.set_exception(exc)
            return
        parts = None if outputs is None else _split(outputs, [t.size for t in tasks])
    if parts is None:
        for task in tasks:
            _run_single(task)
    else:
        for task, part in zip(tasks, parts):
            task.future.set_result(part)


def _run_single(task: _Task) -> None:
    try:
        task.future.set_result(task.run(task.inputs))
    except Exception as exc:  # noqa: BLE001 - delivered to the waiting request
        task.future.set_exception(exc)


class Batcher:
    """Per-key queues drained by `num_batch_threads` workers (TF Serving's shared scheduler)."""

    def __init__(self, options: BatchingOptions):
        self.options = options
        self._queues: dict[Hashable, deque[_Task]] = {}
        self._cond = threading.Condition()
        self._queued_rows = 0
        self._running = 0  # batches executing now
        self._stopped = False
        self._workers = [
            threading.Thread(target=self._work, name=f"imfuse-batch-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, key: Hashable, inputs: dict[str, np.ndarray], size: int, run: RunFn) -> Future:
        """Queue one request; the future yields its own slice of the batch outputs."""
        task = _Task(inputs=inputs, size=size, run=run)
        # Every request goes through the queue and its bound, however large: one of
        # max_batch_size rows or more is taken at once and runs as its own batch.
        limit = self.options.max_enqueued_batches * self.options.max_batch_size
        with self._cond:
            if self._stopped:
                raise StatusError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            if self._queued_rows + size > limit:
                raise StatusError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"batch queue is full ({self._queued_rows} rows waiting, limit {limit}); retry later",
                )
            self._queues.setdefault((key, layout_key(inputs)), deque()).append(task)
            self._queued_rows += size
            self._cond.notify()
        return task.future

    @property
    def queued_rows(self) -> int:
        """Rows waiting in the queues now (for the metrics endpoint)."""
        with self._cond:
            return self._queued_rows

    def _take_batch(self) -> list[_Task] | None:
        """Under the lock: wait until some queue is full or its oldest task timed out."""
        timeout = self.options.batch_timeout_micros / 1e6
        while not self._stopped:
            ready = [(q[0].enqueued, k) for k, q in self._queues.items() if q]
            if not ready:
                self._cond.wait()
                continue
            oldest, key = min(ready)
            queue = self._queues[key]
            rows = sum(t.size for t in queue)
            wait = oldest + timeout - time.monotonic()
            # Wait for peers only while another batch is executing: when the model is
            # idle, holding a request back adds latency and nothing can be gained.
            if rows < self.options.max_batch_size and wait > 0 and self._running > 0:
                self._cond.wait(wait)
                continue
            batch = [queue.popleft()]
            total = batch[0].size  # the oldest always goes, even when it is over-sized
            while queue and total + queue[0].size <= self.options.max_batch_size:
                task = queue.popleft()
                batch.append(task)
                total += task.size
            if not queue:
                del self._queues[key]
            self._queued_rows -= total
            self._running += 1
            return batch
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._take_batch()
            if batch is None:
                return
            try:
                run_tasks(batch)
            finally:
                # An idle worker must not keep its last batch (and through it the servable,
                # maybe a version unloaded since) alive while it waits for the next one.
                batch = None
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def stop(self) -> None:
        """Stop workers; queued requests fail with UNAVAILABLE."""
        with self._cond:
            self._stopped = True
            pending = [t for q in self._queues.values() for t in q]
            self._queues.clear()
            self._cond.notify_all()
        for task in pending:
            task.future.set_exception(StatusError(grpc.StatusCode.UNAVAILABLE, "server is shutting down"))
        for worker in self._workers:
            worker.join(timeout=5)
