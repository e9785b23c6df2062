"""`imfuse serve` as a subprocess, `imfuse client ...` against it, graceful SIGTERM."""

import io
import signal
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from imfuse.cli import main
from serving_fixtures import (
    build_toy_model, content_images, free_port, listening_addresses, start_serve_process, style_images,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    base = root / "models" / "imfuse"
    build_toy_model(base, 1)
    grpc_port, rest_port, admin_port = free_port(), free_port(), free_port()
    # No --host: the default must keep every port on this machine.
    proc, log = start_serve_process(
        ["--model_name", "imfuse", "--model-base-path", str(base), "--port", str(grpc_port),
         "--rest-port", str(rest_port), "--enable-batching",
         "--file-system-poll-wait-seconds", "0.5", "--version-labels", "stable=1",
         "--enable-model-management", "--admin-port", str(admin_port), "--max-images-per-request", "4"],
        root / "serve.log",
    )
    yield {"proc": proc, "grpc": grpc_port, "rest": rest_port, "admin": admin_port, "log": log, "root": root}
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _write_inputs(root):
    content, style = root / "content.jpg", root / "style.jpg"
    content.write_bytes(content_images(1, 40)[0])
    style.write_bytes(style_images(1, 32)[0])
    return content, style


def test_client_stylize_grpc_and_rest(served, capsys):
    content, style = _write_inputs(served["root"])
    out_grpc, out_rest = served["root"] / "out" / "a.png", served["root"] / "b.png"
    assert main(["client", "stylize", "--target", f"127.0.0.1:{served['grpc']}", str(content), str(style),
                 "-o", str(out_grpc), "--strength", "0.5", "--label", "stable"]) == 0
    assert main(["client", "stylize", "--target", f"127.0.0.1:{served['rest']}", "--rest", str(content), str(style),
                 "-o", str(out_rest), "--strength", "0.5"]) == 0
    assert out_grpc.read_bytes() == out_rest.read_bytes()
    assert Image.open(io.BytesIO(out_grpc.read_bytes())).size == Image.open(content).size
    assert main(["client", "status", "--target", f"127.0.0.1:{served['grpc']}"]) == 0
    assert "imfuse version 1: AVAILABLE" in capsys.readouterr().out
    assert main(["client", "metadata", "--target", f"127.0.0.1:{served['grpc']}"]) == 0
    assert '"serving_default"' in capsys.readouterr().out


def test_client_stylize_with_a_fitted_style_file(served, tmp_path, capsys):
    """`imfuse client stylize --embedding` sends the file's embedding to stylize_with_embedding:
    the toy model paints it straight into the pixels."""
    from imfuse.style_fit import StyleFitResult, save_style_embedding
    from serving_fixtures import EMBED_DIM

    content, _ = _write_inputs(served["root"])
    colour = np.array([0.2, 0.6, 0.9], np.float32)[:EMBED_DIM]
    fitted = save_style_embedding(tmp_path / "s.json", StyleFitResult(colour, colour * 0), {"model": "toy"})
    out = tmp_path / "fit.png"
    assert main(["client", "stylize", "--target", f"127.0.0.1:{served['grpc']}", str(content), "--embedding",
                 str(fitted), "-o", str(out), "--strength", "1"]) == 0
    pixels = np.asarray(Image.open(out), np.float32) / 255
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(0), colour, atol=0.01)
    capsys.readouterr()
    assert main(["client", "stylize", "--target", f"127.0.0.1:{served['grpc']}", str(content), "-o", str(out)]) == 2
    assert "STYLE or --embedding" in capsys.readouterr().err


def test_client_errors_are_one_line_exit_2(served, capsys, tmp_path):
    content, style = _write_inputs(served["root"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    cases = [
        ["client", "stylize", "--target", f"127.0.0.1:{served['grpc']}", str(bad), str(style), "-o", str(tmp_path / "x.png")],
        ["client", "stylize", "--target", f"127.0.0.1:{served['grpc']}", str(tmp_path / "missing.jpg"), str(style), "-o", "x.png"],
        ["client", "status", "--target", f"127.0.0.1:{served['grpc']}", "--model-name", "nope"],
        ["client", "stylize", "--target", f"127.0.0.1:{served['grpc']}", str(content), str(style), "-o", "x.png", "--strength", "3"],
    ]
    for argv, text in zip(cases, ["INVALID_ARGUMENT", "missing.jpg", "NOT_FOUND", "strength"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("imfuse: error:") and text in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()


def test_serve_rejects_bad_flags_with_one_line(tmp_path, capsys):
    assert main(["serve", "--model-base-path", str(tmp_path / "nowhere"), "--port", "0", "--rest-port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and "\n" not in err


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_default_host_is_loopback_for_every_port(served):
    for kind in ("grpc", "rest", "admin"):
        assert listening_addresses(served[kind]) == {"127.0.0.1"}, kind
    served["log"].seek(0)
    assert f"model management on 127.0.0.1:{served['admin']}" in served["log"].read()


def test_flags_reach_the_server(served, capsys):
    """--max-images-per-request 4: five images in one request are refused."""
    from imfuse.serving.client import PredictionClient
    from imfuse.serving.status import StatusError

    content, style = (p.read_bytes() for p in _write_inputs(served["root"]))
    client = PredictionClient(f"127.0.0.1:{served['grpc']}", retries=0)
    with pytest.raises(StatusError) as info:
        client.predict({"content_image": np.array([content] * 3, dtype=object),
                        "style_image": np.array([style] * 3, dtype=object)})
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "more than 4 images" in str(info.value)


def test_help_names_the_defaults_and_the_host_choice(capsys):
    from imfuse.cli import serving as cli_serving
    from imfuse.serving import admin, limits, metrics

    # The CLI keeps TF-free copies of these for its help texts: they must not drift.
    assert cli_serving.DEFAULT_MAX_IMAGES == limits.DEFAULT_MAX_IMAGES
    assert cli_serving.DEFAULT_MAX_PIXELS == limits.DEFAULT_MAX_PIXELS
    assert cli_serving.DEFAULT_ADMIN_PORT == admin.DEFAULT_ADMIN_PORT
    assert cli_serving.DEFAULT_METRICS_PATH == metrics.DEFAULT_PATH
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default 127.0.0.1" in text and "--host 0.0.0.0" in text
    for flag in ("--enable-model-management", "--admin-port", "--model-root", "--max-images-per-request",
                 "--max-pixels-per-request", "--max-concurrent-rpcs", "--monitoring-config-file"):
        assert flag in text


def test_sigterm_shuts_down_gracefully(served):
    proc = served["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    served["log"].seek(0)
    text = served["log"].read()
    assert "loaded model imfuse version 1" in text and "server stopped" in text and "Traceback" not in text
