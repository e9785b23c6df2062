"""Batcher: merges concurrent requests, splits results, isolates bad requests."""

import threading
import time

import grpc
import numpy as np
import pytest

from imfuse.serving.batching import Batcher
from imfuse.serving.config import BatchingOptions
from imfuse.serving.status import StatusError


class Recorder:
    """A run function doubling its input, recording batch sizes, failing on -1."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, inputs):
        x = inputs["x"]
        with self.lock:
            self.batches.append(int(x.shape[0]))
        time.sleep(self.delay)
        if (x == -1).any():
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "negative one is not allowed")
        return {"y": x * 2, "rows": np.arange(x.shape[0])}


def _submit_concurrently(batcher, run, values, key="k"):
    results = [None] * len(values)
    barrier = threading.Barrier(len(values))

    def worker(i):
        barrier.wait()
        fut = batcher.submit(key, {"x": np.array([values[i]], np.float32)}, 1, run)
        try:
            results[i] = fut.result(timeout=10)
        except StatusError as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(values))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_requests_are_merged_and_split_back():
    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1))
    run = Recorder(delay=0.05)  # while one batch runs, the others queue up and merge
    try:
        results = _submit_concurrently(batcher, run, list(range(8)))
    finally:
        batcher.stop()
    assert [float(r["y"][0]) for r in results] == [2.0 * i for i in range(8)]
    assert max(run.batches) > 1 and sum(run.batches) == 8
    assert all(r["y"].shape == (1,) for r in results)


def test_bad_request_fails_alone():
    batcher = Batcher(BatchingOptions(max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1))
    run = Recorder(delay=0.02)
    try:
        results = _submit_concurrently(batcher, run, [1.0, -1.0, 3.0, 4.0])
    finally:
        batcher.stop()
    assert isinstance(results[1], StatusError) and results[1].code == grpc.StatusCode.INVALID_ARGUMENT
    assert [float(results[i]["y"][0]) for i in (0, 2, 3)] == [2.0, 6.0, 8.0]


def test_full_queue_is_resource_exhausted():
    batcher = Batcher(BatchingOptions(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1))
    slow = Recorder(delay=0.5)
    try:
        first = batcher.submit("k", {"x": np.zeros(1, np.float32)}, 1, slow)
        time.sleep(0.1)  # worker is now busy with the first request
        batcher.submit("k", {"x": np.zeros(1, np.float32)}, 1, slow)
        batcher.submit("k", {"x": np.zeros(1, np.float32)}, 1, slow)
        with pytest.raises(StatusError) as info:
            batcher.submit("k", {"x": np.zeros(1, np.float32)}, 1, slow)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert first.result(timeout=5)["y"].shape == (1,)
    finally:
        batcher.stop()


def test_idle_batcher_does_not_hold_a_lone_request():
    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=2_000_000, num_batch_threads=1))
    try:
        start = time.monotonic()
        batcher.submit("k", {"x": np.ones(1, np.float32)}, 1, Recorder()).result(timeout=5)
        assert time.monotonic() - start < 1.0  # not the 2 s batch timeout
    finally:
        batcher.stop()


def test_idle_worker_releases_its_last_batch_and_the_model_behind_it():
    """After a version unloads, no batch thread may keep it alive (its memory must return)."""
    import gc
    import weakref

    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=1))
    try:
        run = Recorder()  # stands in for the servable a request's run function is bound to
        gone = weakref.ref(run)
        assert batcher.submit("k", {"x": np.ones(1, np.float32)}, 1, run).result(timeout=5)["y"].shape == (1,)
        del run
        deadline = time.monotonic() + 3
        while gone() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.02)
        assert gone() is None, "the idle batch worker still holds the last run function"
    finally:
        batcher.stop()


def test_different_layouts_never_share_a_batch():
    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=100_000, num_batch_threads=1))
    run = Recorder()
    try:
        a = batcher.submit("k", {"x": np.zeros((1, 2), np.float32)}, 1, run)
        b = batcher.submit("k", {"x": np.zeros((1, 3), np.float32)}, 1, run)
        assert a.result(5)["y"].shape == (1, 2) and b.result(5)["y"].shape == (1, 3)
    finally:
        batcher.stop()
    assert run.batches == [1, 1]


def test_full_size_requests_count_against_the_queue_bound():
    """A request of max_batch_size rows or more used to run at once, past the bound."""
    batcher = Batcher(BatchingOptions(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1))
    slow = Recorder(delay=0.5)
    try:
        first = batcher.submit("k", {"x": np.zeros(1, np.float32)}, 1, slow)
        time.sleep(0.1)  # the only worker is busy
        batcher.submit("k", {"x": np.zeros(1, np.float32)}, 1, slow)  # queue: 1 of 2 rows
        with pytest.raises(StatusError) as info:
            batcher.submit("k", {"x": np.zeros(2, np.float32)}, 2, slow)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.result(timeout=5)
    finally:
        batcher.stop()


def test_over_sized_request_runs_alone_on_a_worker():
    batcher = Batcher(BatchingOptions(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=4, num_batch_threads=1))
    run = Recorder()
    threads = []

    def recording(inputs):
        threads.append(threading.current_thread().name)
        return run(inputs)

    try:
        out = batcher.submit("k", {"x": np.arange(3, dtype=np.float32)}, 3, recording).result(timeout=5)
    finally:
        batcher.stop()
    assert out["y"].tolist() == [0.0, 2.0, 4.0] and run.batches == [3]
    assert threads == ["imfuse-batch-0"]  # queued like any other request, not run by the caller
