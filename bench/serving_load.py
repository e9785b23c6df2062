"""bench/serving_load: bounded load + fault run against `imfuse serve`, in-process on 127.0.0.1.

N clients share a fixed number of requests over gRPC and REST; a share of them is
malformed (random bytes, a huge declared tensor shape, a decompression-bomb header, too
many images, a truncated REST body, an over-deep JSON document, a body over the size
limit). A quarter of the way in, a new model version is dropped into the base path and the
server rolls to it. Reported: good requests that failed, bad requests by status, whether
the server still serves, RSS before/after, p50/p95 latency of good requests, versions that
answered, and the CPU (lscpu model name, avx512_bf16).

Exit status 0 only when all four checks pass (each printed under "checks:"):
  1. no good request failed;
  2. every bad request got one of the statuses expected for its kind (EXPECTED below);
  3. the server still answers a good gRPC and REST request after the run;
  4. memory returned near its baseline: RSS after the run, after gc and malloc_trim, is at
     most --rss-tolerance-mb above the RSS after the warm-up (also after gc and
     malloc_trim). Without malloc_trim (not glibc) both are untrimmed RSS.

The model is the shipped base model exported as a SavedModel (`--model base`), or the
small in-graph blend from tests/serving_fixtures.py (`--model toy`).
Run: python bench/serving_load.py [--requests 640] [--clients 32] [--model base]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from imfuse.precision import cpu_summary  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the expected failures would flood stderr
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BAD_KINDS = ("random-bytes", "huge-shape", "bomb-header", "too-many-images", "truncated-body", "deep-json",
             "body-too-large")
# The clear statuses each malformed request may get (docs/serving.md, "Request limits").
EXPECTED = {
    ("random-bytes", "grpc"): {"INVALID_ARGUMENT"},  # not an image: the graph's decode check
    ("random-bytes", "rest"): {"HTTP 400"},
    ("huge-shape", "grpc"): {"INVALID_ARGUMENT"},  # declared elements checked before allocation
    ("bomb-header", "grpc"): {"RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"},  # pixel budget, or the 64 MP check
    ("bomb-header", "rest"): {"HTTP 429", "HTTP 400"},
    ("too-many-images", "grpc"): {"RESOURCE_EXHAUSTED"},  # images per request
    ("truncated-body", "rest"): {"HTTP 408"},  # body not received within --rest-body-timeout-seconds
    ("deep-json", "rest"): {"HTTP 400"},
    ("body-too-large", "rest"): {"HTTP 413"},  # refused from Content-Length before reading
}
# Default --rss-tolerance-mb, from measurement (2026-12-06, base model, 2-core Xeon): after
# malloc_trim the run grew +52 MB at 160 requests and +76 MB at the default 640 (the second
# version's compiled functions and caches), while an unloaded version kept alive by an idle
# batch thread (the bug this check found, fixed in serving/batching.py) showed +480 MB. 200 MB
# is ~2.5x the normal growth, below one retained model, and a leak of 0.3 MB or more per
# request fails it at the default count.
RSS_TOLERANCE_MB = 200.0


@dataclass
class Outcome:
    """What one request ended as: good ones must be 'OK'."""

    good: bool
    kind: str
    api: str
    status: str
    seconds: float
    version: int | None = None


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def trim_heap() -> bool:
    """Ask glibc to hand freed heap pages back (False where that is not available).

    RSS after a burst mostly measures what malloc keeps cached in its per-thread arenas;
    RSS after a trim is what is really still in use, which is what shows a leak.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def _jpeg(path: Path, size: int) -> bytes:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def bomb_png(side: int = 60000) -> bytes:
    """A valid-looking 60-byte PNG whose header declares side x side pixels."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def export_model(kind: str, staging: Path) -> Path:
    """Version 1 of the model under staging/imfuse/1."""
    if kind == "base":
        from imfuse.base_model import base_model_path
        from imfuse.export import export_saved_model
        from imfuse.networks import load_model

        return export_saved_model(load_model(base_model_path()), staging, name="imfuse", version=1)
    sys.path.insert(0, str(REPO / "tests"))
    from serving_fixtures import build_toy_model

    return build_toy_model(staging / "imfuse", 1)


def drop_version(src: Path, base: Path, version: int) -> None:
    """Copy a version folder in under a temporary name, then rename: what a publisher does."""
    tmp = base / f".incoming-{version}"
    shutil.copytree(src, tmp)
    os.replace(tmp, base / str(version))


class Workload:
    """Sends one request of a given kind and classifies the reply."""

    def __init__(self, grpc_target: str, rest_port: int, content: bytes, style: bytes, timeout_s: float):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(grpc_target, options=[("grpc.max_send_message_length", 64 << 20)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.rest_port = rest_port
        self.content, self.style, self.timeout_s = content, style, timeout_s

    # --- gRPC -----------------------------------------------------------------------
    def _predict(self, inputs: dict) -> tuple[str, int | None, object]:
        import grpc
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "imfuse"
        for name, proto in inputs.items():
            request.inputs[name].CopyFrom(proto)
        try:
            response = self.stub.Predict(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            return exc.code().name, None, None
        return "OK", int(response.model_spec.version.value), response

    def _strings(self, *values: bytes, shape: list[int] | None = None):
        from tensorflow.core.framework import tensor_pb2, types_pb2

        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=list(values))
        for size in shape if shape is not None else [len(values)]:
            proto.tensor_shape.dim.add(size=size)
        return proto

    def grpc_good(self) -> tuple[str, int | None]:
        status, version, response = self._predict(
            {"content_image": self._strings(self.content), "style_image": self._strings(self.style)})
        if status == "OK":
            png = response.outputs["stylized_image"].string_val[0]
            if png[:8] != b"\x89PNG\r\n\x1a\n":
                return "WRONG_OUTPUT", version
        return status, version

    def grpc_bad(self, kind: str, rng: random.Random) -> str:
        if kind == "random-bytes":
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(16, 4096)))
            return self._predict({"content_image": self._strings(junk), "style_image": self._strings(self.style)})[0]
        if kind == "huge-shape":
            return self._predict({"content_image": self._strings(b"x", shape=[10**9]),
                                  "style_image": self._strings(self.style)})[0]
        if kind == "bomb-header":
            return self._predict({"content_image": self._strings(bomb_png()), "style_image": self._strings(self.style)})[0]
        if kind == "too-many-images":
            return self._predict({"content_image": self._strings(*[self.content] * 20),
                                  "style_image": self._strings(*[self.style] * 20)})[0]
        raise ValueError(kind)

    # --- REST -----------------------------------------------------------------------
    def _post(self, body: bytes) -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}/v1/models/imfuse:predict", data=body,
                                         method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
                return "HTTP 200" if b"predictions" in body else "HTTP 200 (unexpected body)"
        except urllib.error.HTTPError as exc:
            exc.read()
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"connection error ({type(getattr(exc, 'reason', exc)).__name__})"

    def _instances(self, content: bytes) -> bytes:
        import base64

        b64 = lambda b: {"b64": base64.b64encode(b).decode()}  # noqa: E731
        return json.dumps({"signature_name": "serving_default",
                           "instances": [{"content_image": b64(content), "style_image": b64(self.style)}]}).encode()

    def rest_good(self) -> str:
        return self._post(self._instances(self.content))

    def rest_bad(self, kind: str, rng: random.Random) -> str:
        if kind == "random-bytes":
            return self._post(self._instances(bytes(rng.getrandbits(8) for _ in range(rng.randint(16, 4096)))))
        if kind == "bomb-header":
            return self._post(self._instances(bomb_png()))
        if kind == "deep-json":
            return self._post(b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}")
        if kind == "body-too-large":
            return self._raw(b"Content-Length: %d\r\n\r\n{" % (1 << 30))
        if kind == "truncated-body":  # 100 of 5000 declared bytes, then silence: the server must time out
            return self._raw(b"Content-Length: 5000\r\n\r\n" + self._instances(self.content)[:100])
        raise ValueError(kind)

    def _raw(self, rest: bytes) -> str:
        head = b"POST /v1/models/imfuse:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        with socket.create_connection(("127.0.0.1", self.rest_port), timeout=self.timeout_s) as sock:
            sock.sendall(head + rest)
            reply = sock.recv(64)
        parts = reply.split(b" ", 2)  # b"HTTP/1.1 413 ..."
        return f"HTTP {parts[1].decode('latin-1')}" if len(parts) > 1 else "connection closed"


def warm_up(work: Workload, clients: int) -> None:
    """Concurrent good requests on both APIs before the memory baseline.

    The first batches of each size build kernels and caches that stay for the life of
    the process (hundreds of MB for the base model); without this the 'after' RSS would
    count them as growth.
    """
    results: list[str] = []

    def one(i: int) -> None:
        results.append(work.grpc_good()[0] if i % 2 == 0 else work.rest_good())

    for _ in range(2):
        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert set(results) <= {"OK", "HTTP 200"}, Counter(results)


def watch_roll(status_client, t0: float, stop: threading.Event, seen: dict) -> None:
    """Record when version 2 became AVAILABLE and version 1 reached END (seconds into the run)."""
    from imfuse.serving.status import StatusError

    while not stop.wait(0.2):
        try:
            states = {s["version"]: s["state"] for s in status_client.status()}
        except StatusError:  # keep watching; the run reports server health itself
            continue
        if states.get(2) == "AVAILABLE":
            seen.setdefault("v2 available", time.perf_counter() - t0)
        if states.get(1) == "END":
            seen.setdefault("v1 unloaded", time.perf_counter() - t0)


def plan(requests: int, bad_share: float, seed: int) -> list[tuple[bool, str, str]]:
    """(good, kind, api) for every request, shuffled with a fixed seed."""
    rng = random.Random(seed)
    bad = round(requests * bad_share)
    items = []
    for i in range(requests - bad):
        items.append((True, "stylize", "grpc" if i % 2 == 0 else "rest"))
    rest_only = {"truncated-body", "deep-json", "body-too-large"}
    grpc_only = {"huge-shape", "too-many-images"}
    for i in range(bad):
        kind = BAD_KINDS[i % len(BAD_KINDS)]
        api = "rest" if kind in rest_only else "grpc" if kind in grpc_only else ("grpc" if (i // len(BAD_KINDS)) % 2 == 0 else "rest")
        items.append((False, kind, api))
    rng.shuffle(items)
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["base", "toy"], default="base")
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--bad-share", type=float, default=0.25, help="share of malformed requests")
    parser.add_argument("--size", type=int, default=96, help="content image size in px (longer side)")
    parser.add_argument("--timeout", type=float, default=300.0, help="client deadline per request (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rss-tolerance-mb", type=float, default=RSS_TOLERANCE_MB,
                        help="allowed RSS growth over the warmed-up baseline, both after gc and malloc_trim "
                             f"(default {RSS_TOLERANCE_MB:g}: see RSS_TOLERANCE_MB)")
    args = parser.parse_args(argv)
    if not 0 <= args.bad_share < 1 or args.requests < 2 or args.clients < 1:
        parser.error("need --requests >= 2, --clients >= 1 and 0 <= --bad-share < 1")

    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("imfuse.serving").setLevel(logging.CRITICAL)  # bad requests are expected

    from imfuse.serving.client import PredictionClient
    from imfuse.serving.config import BatchingOptions
    from imfuse.serving.rest import RestOptions
    from imfuse.serving.server import ServerOptions, start_server

    content = _jpeg(sorted((DATA / "content").glob("*.jpg"))[0], args.size)
    style = _jpeg(sorted((DATA / "styles").glob("*.jpg"))[0], 128)
    print(cpu_summary())
    with tempfile.TemporaryDirectory(prefix="imfuse-load-") as tmp:
        start = time.perf_counter()
        v1 = export_model(args.model, Path(tmp) / "staging")
        base = Path(tmp) / "models" / "imfuse"
        base.mkdir(parents=True)
        drop_version(v1, base, 1)
        print(f"model: {args.model}, exported in {time.perf_counter() - start:.1f}s; content {args.size} px JPEG "
              f"{len(content)} B; {args.requests} requests, {args.clients} clients, {args.bad_share:.0%} malformed")
        running = start_server(ServerOptions(
            model_base_path=str(base), port=0, rest_port=0, host="127.0.0.1", poll_wait_s=0.5,
            batching=BatchingOptions(), max_request_bytes=8 << 20, rest=RestOptions(body_timeout_s=5.0),
        ))
        try:
            work = Workload(f"127.0.0.1:{running.grpc_port}", running.rest_port, content, style, args.timeout)
            warm_up(work, args.clients)
            gc.collect()
            trim_heap()
            rss_before = rss_mb()
            items = plan(args.requests, args.bad_share, args.seed)
            tally, done, lock = Tally(), [0], threading.Lock()
            next_index = iter(range(len(items)))
            rolled = threading.Event()

            def client(worker: int) -> None:
                rng = random.Random(args.seed * 1000 + worker)
                while True:
                    with lock:
                        i = next(next_index, None)
                    if i is None:
                        return
                    good, kind, api = items[i]
                    t0 = time.perf_counter()
                    version = None
                    try:
                        if good and api == "grpc":
                            status, version = work.grpc_good()
                        elif good:
                            status = work.rest_good()
                        elif api == "grpc":
                            status = work.grpc_bad(kind, rng)
                        else:
                            status = work.rest_bad(kind, rng)
                    except Exception as exc:  # noqa: BLE001 - a client-side failure is an outcome too
                        status = f"client exception {type(exc).__name__}"
                    tally.add(Outcome(good, kind, api, status, time.perf_counter() - t0, version))
                    with lock:
                        done[0] += 1
                        roll_now = done[0] >= len(items) // 4 and not rolled.is_set()
                        if roll_now:
                            rolled.set()
                    if roll_now:
                        roll_times["v2 dropped"] = time.perf_counter() - t_start
                        drop_version(v1, base, 2)  # the server polls and rolls to it

            threads = [threading.Thread(target=client, args=(w,)) for w in range(args.clients)]
            status_client = PredictionClient(f"127.0.0.1:{running.grpc_port}", timeout_s=30)
            stop_watch, roll_times = threading.Event(), {}
            t_start = time.perf_counter()
            watcher = threading.Thread(target=watch_roll, args=(status_client, t_start, stop_watch, roll_times))
            watcher.start()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t_start
            deadline = time.monotonic() + 60
            while {s["version"]: s["state"] for s in status_client.status()}.get(2) != "AVAILABLE":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            stop_watch.set()
            watcher.join()
            states = {s["version"]: s["state"] for s in status_client.status()}
            final_grpc, final_version = work.grpc_good()
            final_rest = work.rest_good()
            up = final_grpc == "OK" and final_rest == "HTTP 200"
            work.channel.close()
            gc.collect()
            time.sleep(1.0)
            rss_after = rss_mb()
            trimmed = trim_heap()
            rss_trimmed = rss_mb()
        finally:
            running.stop()

    good = [o for o in tally.outcomes if o.good]
    bad = [o for o in tally.outcomes if not o.good]
    good_failed = [o for o in good if o.status not in ("OK", "HTTP 200")]
    latencies = sorted(o.seconds for o in good)
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else latencies * 19
    print(f"\nrequests: {len(tally.outcomes)} in {wall:.1f}s ({len(tally.outcomes) / wall:.1f} req/s)")
    print(f"good requests: {len(good)}; failed: {len(good_failed)}" + (" (must be 0)" if good_failed else ""))
    for o in good_failed[:10]:
        print(f"    FAILED {o.api} {o.kind}: {o.status}")
    print(f"good latency: p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {q[18] * 1000:.0f} ms")
    by_version = Counter(o.version for o in good if o.api == "grpc" and o.version is not None)
    print(f"gRPC answers by model version: {dict(sorted(by_version.items()))}; after the run: versions {states}, "
          f"final request served by version {final_version}")
    print("version roll (s into the run): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(roll_times.items(), key=lambda kv: kv[1])))
    print(f"bad requests: {len(bad)}, by kind and status:")
    for (kind, api, status), n in sorted(Counter((o.kind, o.api, o.status) for o in bad).items()):
        print(f"    {kind:16s} {api:4s} -> {status}: {n}")
    print(f"server still up: {'yes' if up else 'NO'} (final gRPC {final_grpc}, REST {final_rest})")
    print(f"RSS: before {rss_before:.0f} MB, after {rss_after:.0f} MB ({rss_after - rss_before:+.0f} MB)"
          + (f", after malloc_trim {rss_trimmed:.0f} MB ({rss_trimmed - rss_before:+.0f} MB)" if trimmed else ""))
    unclear = [o for o in bad if o.status not in EXPECTED.get((o.kind, o.api), set())]
    for o in unclear[:10]:
        print(f"    UNEXPECTED {o.api} {o.kind}: {o.status} (expected {sorted(EXPECTED.get((o.kind, o.api), set()))})")
    growth = rss_trimmed - rss_before
    checks = [
        ("no good request failed", not good_failed, f"{len(good_failed)} of {len(good)} failed"),
        ("every bad request got an expected clear status", not unclear, f"{len(unclear)} of {len(bad)} did not"),
        ("server still up", up, f"final gRPC {final_grpc}, REST {final_rest}"),
        ("memory back near baseline", growth <= args.rss_tolerance_mb,
         f"{growth:+.0f} MB over the warmed-up baseline{' after malloc_trim' if trimmed else ' (no malloc_trim)'}, "
         f"tolerance {args.rss_tolerance_mb:g} MB"),
    ]
    print("checks:")
    for name, ok, detail in checks:
        print(f"    {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
