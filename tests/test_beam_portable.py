"""Both Beam pipelines through Beam's portability framework, unchanged.

`imfuse data prepare` and `imfuse batch-stylize` are run once with the DirectRunner and
once with `--runner PortableRunner -- --job_endpoint=embed --environment_type=EXTERNAL
--environment_config=localhost:PORT` against a local SDK worker pool
(`python -m apache_beam.runners.worker.worker_pool_main`). The pool's workers are
separate processes that only get the pickled pipeline, so this is the closest local
stand-in for Flink/Spark/Dataflow workers: nothing may rely on driver-process state.

The ingest's shards must be byte-identical across runners; batch-stylize's PNGs must
agree within 1/255 and the SavedModel must be loaded once per worker process (counted
from RunInference's `load_model_latency_milli_secs` distribution, one update per load).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import downscale_copies

pytestmark = pytest.mark.slow  # a worker pool, two runners and TF start-up: ~1-2 min

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the pool gets SIGKILL if pytest itself is killed (no finalizer runs then)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """A local Beam SDK worker pool (its own process group, always killed at the end)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("pool") / "worker_pool.log"
    # The pool starts each SDK worker as plain `python -c ...` from PATH: put this
    # interpreter's bin first so the workers get the same venv (Beam, TF, imfuse).
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    check = subprocess.run(["python", "-c", "import apache_beam, imfuse"], env=env, cwd=str(REPO))
    assert check.returncode == 0, "`python` on the workers' PATH cannot import apache_beam and imfuse"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )

    def stop():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # the pool and the SDK workers it started
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        log.close()

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"worker pool exited early:\n{log_path.read_text()[-2000:]}"
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "worker pool never opened its port"
                time.sleep(0.2)
        yield {"port": port, "log": log_path,
               "args": ["--job_endpoint=embed", "--environment_type=EXTERNAL",
                        f"--environment_config=localhost:{port}"]}
    finally:
        stop()


# ---------------------------------------------------------------------- ingest


def _shard_bytes(out: Path, manifest: dict) -> dict[str, bytes]:
    got = {}
    for splits in manifest["shards"].values():
        for shards in splits.values():
            for shard in shards:
                got[shard["path"]] = (out / shard["path"]).read_bytes()
    return got


def test_prepare_portable_runner_shards_identical_to_direct(worker_pool, tmp_path, shared_data):
    from imfuse.cli import main

    content = tmp_path / "src" / "content"
    styles = tmp_path / "src" / "styles"
    downscale_copies(shared_data / "content", content, shorter=64, limit=4)
    downscale_copies(shared_data / "styles", styles, shorter=64, limit=5)
    (content / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # quarantined on both
    common = ["data", "prepare", "--content", str(content), "--styles", str(styles),
              "--content-size", "48", "--style-size", "48", "--style-large-size", "64",
              "--images-per-shard", "2", "--no-progress"]
    direct, portable = tmp_path / "direct", tmp_path / "portable"

    t0 = time.perf_counter()
    assert main([*common, "--out", str(direct)]) == 0
    t1 = time.perf_counter()
    assert main([*common, "--out", str(portable), "--runner", "PortableRunner", "--", *worker_pool["args"]]) == 0
    t2 = time.perf_counter()
    print(f"prepare: DirectRunner {t1 - t0:.1f}s, PortableRunner {t2 - t1:.1f}s")

    m_direct = json.loads((direct / "manifest.json").read_text())
    m_port = json.loads((portable / "manifest.json").read_text())
    assert m_port["runtime"]["runner"] == "PortableRunner"
    # Everything but the runtime block (runner name, beam args, timestamps) is the same.
    for key in m_direct:
        if key != "runtime":
            assert m_port[key] == m_direct[key], key
    a, b = _shard_bytes(direct, m_direct), _shard_bytes(portable, m_port)
    assert len(a) >= 3 and a.keys() == b.keys()
    for path in a:
        assert a[path] == b[path], f"{path} differs between DirectRunner and PortableRunner"
    assert (direct / "quarantine.jsonl").read_bytes() == (portable / "quarantine.jsonl").read_bytes()
    assert sorted(p.name for p in direct.rglob("*")) == sorted(p.name for p in portable.rglob("*"))


# ----------------------------------------------------------------- batch-stylize


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from imfuse.export import export_saved_model
    from imfuse.networks import build_model

    base = tmp_path_factory.mktemp("serving")
    return export_saved_model(build_model("reduced", predictor_weights="none"), base, name="sty")


def _load_counts(results) -> list[int]:
    """Model loads per pipeline run, from RunInference's load-latency distribution."""
    from apache_beam.metrics.metric import MetricsFilter

    counts = []
    for result in results:
        found = result.metrics().query(MetricsFilter().with_name("load_model_latency_milli_secs"))
        total = 0
        for m in found["distributions"]:
            value = m.committed if m.committed is not None else m.attempted
            total += value.count if value is not None else 0
        counts.append(total)
    return counts


def test_batch_stylize_portable_runner_matches_direct_and_loads_once(
    worker_pool, saved_model, tmp_path, shared_data, monkeypatch
):
    import apache_beam as beam

    from imfuse.cli import main

    inputs = tmp_path / "in"
    names = [p.stem for p in downscale_copies(shared_data / "content", inputs, shorter=40, limit=5)]
    assert len(names) >= 3
    style = downscale_copies(shared_data / "styles", tmp_path / "style", shorter=48, limit=1)[0]

    results = []  # every PipelineResult, to read the metrics run_batch_stylize does not return
    original_run = beam.Pipeline.run

    def recording_run(self, *args, **kwargs):
        result = original_run(self, *args, **kwargs)
        results.append(result)
        return result

    monkeypatch.setattr(beam.Pipeline, "run", recording_run)
    common = ["batch-stylize", "--model", str(saved_model), "--input", str(inputs / "*.jpg"),
              "--style", str(style), "--strength", "0.8", "--batch-size", "2", "--no-progress"]
    direct, portable = tmp_path / "direct", tmp_path / "portable"

    t0 = time.perf_counter()
    assert main([*common, "--output", str(direct)]) == 0
    t1 = time.perf_counter()
    assert main([*common, "--output", str(portable), "--runner", "PortableRunner", "--", *worker_pool["args"]]) == 0
    t2 = time.perf_counter()
    print(f"batch-stylize: DirectRunner {t1 - t0:.1f}s, PortableRunner {t2 - t1:.1f}s")

    for out in (direct, portable):
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["matched"], summary["written"], summary["quarantined"]) == (len(names), len(names), 0)
    for name in names:
        a = np.asarray(Image.open(direct / f"{name}.png"), dtype=np.int16)
        b = np.asarray(Image.open(portable / f"{name}.png"), dtype=np.int16)
        assert a.shape == b.shape and a.std() > 1.0
        assert np.abs(a - b).max() <= 1, f"{name}.png differs by more than 1/255"

    # One SDK worker process (sdk_worker_parallelism=1) served 3 batches of <= 2 images:
    # the SavedModel was loaded once for the whole run, not per batch or per bundle.
    assert len(results) == 2
    loads = _load_counts(results)
    assert loads[1] == 1, f"model loads on the portable run: {loads[1]} (DirectRunner: {loads[0]})"
