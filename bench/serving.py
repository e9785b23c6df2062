"""bench/serving: overhead of the local TF Serving stand-in, and what batching buys.

(1) gRPC round trip vs an in-process call of the same SavedModel signature at 512 px
    content (target: ratio <= 1.15).
(2) Throughput with 1 vs 8 concurrent gRPC clients, batching on (target >= 1.6x on
    2 cores); batching off is printed alongside to show where the gain comes from.

The model is the real export (`imfuse.export.export_saved_model` of a freshly built
`reduced` model: real architecture and compute, random weights), or with `--model toy`
the small in-graph blend from tests/serving_fixtures.py.
Run: python bench/serving.py [--size 512] [--requests 24]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _jpeg(path: Path, size: int, square: bool = True) -> bytes:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if square:
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    img = img.resize((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def build_model(kind: str, base: Path) -> Path:
    """Export a model into BASE/imfuse/1 and return the version folder."""
    if kind == "real":
        from imfuse.export import export_saved_model
        from imfuse.networks import build_model as build_network

        return export_saved_model(build_network("reduced", predictor_weights="none"), base, "imfuse", version=1)
    sys.path.insert(0, str(REPO / "tests"))
    from serving_fixtures import build_toy_model

    return build_toy_model(base / "imfuse", 1)


def timed(fn, n: int, desc: str) -> list[float]:
    from tqdm import tqdm

    times = []
    for _ in tqdm(range(n), desc=desc, leave=False):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def throughput(client_factory, content: bytes, style: bytes, clients: int, total: int, desc: str) -> float:
    """Requests per second with `clients` threads sharing `total` requests."""
    from tqdm import tqdm

    per = total // clients
    bar = tqdm(total=per * clients, desc=desc, leave=False)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work():
        client = client_factory()
        try:
            for _ in range(per):
                client.stylize(content, style)
                with lock:
                    bar.update(1)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    bar.close()
    if errors:
        raise errors[0]
    return per * clients / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["real", "toy"], default="real")
    parser.add_argument("--size", type=int, default=512, help="content size in px (square)")
    parser.add_argument("--requests", type=int, default=24, help="requests per measurement")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (median reported)")
    args = parser.parse_args(argv)

    import logging

    import numpy as np
    from tqdm import tqdm

    from imfuse.serving.client import PredictionClient
    from imfuse.serving.config import BatchingOptions, load_batching_file
    from imfuse.serving.servable import load_servable
    from imfuse.serving.server import ServerOptions, start_server

    logging.getLogger("imfuse.serving").setLevel(logging.WARNING)
    content = _jpeg(sorted((DATA / "content").glob("*.jpg"))[0], args.size)
    style = _jpeg(sorted((DATA / "styles").glob("*.jpg"))[0], 256)
    batching_file = REPO / "serving" / "batching.config"
    batching = load_batching_file(batching_file) if batching_file.exists() else BatchingOptions()

    with tempfile.TemporaryDirectory() as tmp:
        version_dir = build_model(args.model, Path(tmp))
        print(f"model: {args.model} ({version_dir}), content {args.size}x{args.size} JPEG {len(content)} B, "
              f"style 256 px; batching {batching}; cpu cores: {len(__import__('os').sched_getaffinity(0))}")

        # (1) in-process vs gRPC round trip, same signature, same inputs
        # in-process: the loaded SavedModel's signature, defaults filled as the server does
        servable = load_servable("imfuse", 1, version_dir)
        key, inputs = servable.prepare("serving_default", {
            "content_image": np.array([content], dtype=object), "style_image": np.array([style], dtype=object)})
        _, batch_inputs = servable.prepare("serving_default", {
            "content_image": np.array([content] * args.clients, dtype=object),
            "style_image": np.array([style] * args.clients, dtype=object)})
        servable.run(key, batch_inputs)

        servers = {
            label: start_server(ServerOptions(model_base_path=str(version_dir.parent), port=0, rest_port=None,
                                              host="127.0.0.1", batching=opts, poll_wait_s=0))
            for label, opts in (("batching off", None), ("batching on", batching))
        }
        try:
            targets = {label: f"127.0.0.1:{srv.grpc_port}" for label, srv in servers.items()}
            clients = {label: PredictionClient(t, timeout_s=300) for label, t in targets.items()}
            for _ in range(5):  # warm up every path (first calls build oneDNN primitives)
                servable.run(key, inputs)
                for c in clients.values():
                    c.stylize(content, style)
            # (1) interleaved so load drift on a shared machine hits all paths alike
            lat = {"in-process": [], **{label: [] for label in clients}}
            for _ in tqdm(range(args.requests), desc="latency", leave=False):
                start = time.perf_counter()
                servable.run(key, inputs)
                lat["in-process"].append(time.perf_counter() - start)
                for label, c in clients.items():
                    start = time.perf_counter()
                    c.stylize(content, style)
                    lat[label].append(time.perf_counter() - start)
            batch_times = []
            for _ in range(3):
                start = time.perf_counter()
                servable.run(key, batch_inputs)
                batch_times.append(time.perf_counter() - start)
            # (2) throughput, alternating 1 and N clients over a few rounds
            rates = {label: ([], []) for label in clients}
            for _ in range(args.rounds):
                for label, target in targets.items():
                    factory = lambda t=target: PredictionClient(t, timeout_s=300)  # noqa: E731
                    rates[label][0].append(throughput(factory, content, style, 1, args.requests, f"{label}, 1 client"))
                    rates[label][1].append(throughput(factory, content, style, args.clients, args.requests,
                                                      f"{label}, {args.clients} clients"))
        finally:
            for srv in servers.values():
                srv.stop()
    in_process = lat.pop("in-process")
    batch_time = statistics.median(batch_times)
    results = {label: (statistics.median(lat[label]), statistics.median(r[0]), statistics.median(r[1]))
               for label, r in rates.items()}

    base = statistics.median(in_process)
    print("\n(1) latency, median of", args.requests, "calls at", args.size, "px")
    print(f"    in-process signature call      {base * 1000:8.1f} ms   1.00x (baseline)")
    for label, (lat, _, _) in results.items():
        print(f"    gRPC round trip, {label:13s} {lat * 1000:8.1f} ms   {lat / base:.2f}x   (target <= 1.15x)")
    print(f"\n(2) throughput, {args.requests} requests per run, median of {args.rounds} rounds")
    for label, (_, one, many) in results.items():
        print(f"    {label:13s}: 1 client {one:6.2f} req/s | {args.clients} clients {many:6.2f} req/s | "
              f"{many / one:.2f}x" + ("   (target >= 1.6x)" if label == "batching on" else ""))
    off_many, on_many = results["batching off"][2], results["batching on"][2]
    print(f"    {args.clients} clients, batching on vs off: {on_many / off_many:.2f}x")
    single_rate, batch_rate = 1 / base, args.clients / batch_time
    print(f"\n(3) model alone, in-process: batch 1 {single_rate:.2f} img/s | batch {args.clients} {batch_rate:.2f} img/s | "
          f"{batch_rate / single_rate:.2f}x  (ceiling for what merging requests can give)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
