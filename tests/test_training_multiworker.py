"""Two MultiWorkerMirroredStrategy workers as two processes on 127.0.0.1 (TF_CONFIG):
killed mid-run and restarted, both resume at the chief's step and end with identical
weights. Slow: two TensorFlow processes training in lockstep on shared cores."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

TASK = Path(__file__).with_name("multiworker_task.py")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(data: Path, out: Path, steps: int, ports: list[int], tmp: Path, tag: str) -> list[subprocess.Popen]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(len(ports)):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
               "TMPDIR": str(tmp)}  # the other workers' scratch run folders go with tmp_path
        log = open(tmp / f"{tag}-worker{index}.log", "w")
        procs.append(subprocess.Popen([sys.executable, str(TASK), str(data), str(out), str(steps)],
                                      stdout=subprocess.PIPE, stderr=log, env=env, text=True))
    return procs


def _latest_step(out: Path) -> int:
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[dict]:
    results = []
    try:
        for proc in procs:
            stdout, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"worker exited {proc.returncode}"
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results


def test_killed_workers_resume_together_from_the_chiefs_checkpoint(prepared_dataset, tmp_path):
    out = tmp_path / "run"
    ports = _free_ports(2)
    procs = _start(prepared_dataset, out, 10_000, ports, tmp_path, "first")
    deadline = time.monotonic() + 240
    try:
        while _latest_step(out) < 4:
            assert time.monotonic() < deadline, "no checkpoint at step 4 within 240 s"
            assert all(p.poll() is None for p in procs), "a worker died before the kill"
            time.sleep(0.5)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    resumed = _latest_step(out)
    assert resumed >= 4

    procs = _start(prepared_dataset, out, resumed + 2, _free_ports(2), tmp_path, "second")
    chief, worker = _finish(procs, timeout=240)
    assert chief["start_step"] == worker["start_step"] == resumed
    assert chief["step"] == worker["step"] == resumed + 2
    assert chief["weights"] == worker["weights"]
