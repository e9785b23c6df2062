"""The cancellable background jobs of imfuse studio, and the library hook they use:
imfuse.gatys.run_optimization's on_step callback (progress; raising stops the run)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from imfuse.errors import ImageError
from imfuse.studio.jobs import CANCELLED, DONE, FAILED, JobManager


class Stop(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["adam", pytest.param("lbfgs", marks=pytest.mark.slow)])
def test_run_optimization_reports_every_step_and_stops_when_on_step_raises(optimizer):
    from imfuse.gatys import OptimizeConfig, run_optimization
    from imfuse.studio.gatys import loss_network

    lossnet = loss_network()  # built once per session, shared with the studio's own jobs

    rng = np.random.default_rng(0)
    content = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    style = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    config = OptimizeConfig(steps=3, size=32, optimizer=optimizer)
    calls = []
    result = run_optimization(content, [(style, 1.0)], config, lossnet, progress=False,
                              on_step=lambda done, total, losses: calls.append((done, total, losses["loss"])))
    assert [c[:2] for c in calls] == [(i + 1, 3) for i in range(len(result.history))]
    assert [c[2] for c in calls] == [row["loss"] for row in result.history]

    def stop_at_two(done, total, losses):
        if done == 2:
            raise Stop()

    with pytest.raises(Stop):
        run_optimization(content, [(style, 1.0)], OptimizeConfig(steps=50, size=32, optimizer=optimizer),
                         lossnet, progress=False, on_step=stop_at_two)


def test_jobs_run_in_order_report_progress_and_cancel_queued_and_running():
    jobs = JobManager()
    gate = threading.Event()
    seen = []

    def slow(on_step):
        for i in range(1, 1000):
            on_step(i, 1000)
            seen.append(i)
            gate.wait(0.01)
        return np.zeros((2, 2, 3), np.uint8)

    running = jobs.submit(slow, total=1000)
    queued = jobs.submit(lambda on_step: np.ones((2, 2, 3), np.uint8), total=1)
    jobs.cancel(queued.id)
    assert jobs.get(queued.id).state == CANCELLED
    while not seen:
        gate.wait(0.01)
    jobs.cancel(running.id)
    assert jobs.wait(running.id, 10).state == CANCELLED and running.done < 1000
    ok = jobs.submit(lambda on_step: np.ones((2, 2, 3), np.uint8), total=1)
    assert jobs.wait(ok.id, 10).state == DONE and ok.result.shape == (2, 2, 3)

    def bad(on_step):
        raise ImageError("x.png: not an image")

    failed = jobs.wait(jobs.submit(bad, total=1).id, 10)
    assert failed.state == FAILED and failed.error == "x.png: not an image"
    crashed = jobs.wait(jobs.submit(lambda on_step: 1 / 0, total=1).id, 10)
    assert crashed.state == FAILED and crashed.error.startswith("internal error: ZeroDivisionError")
    jobs.shutdown()

