"""`imfuse pipeline run --local` end to end on tiny demo data: a registered MLflow model
version with aliases and a versioned SavedModel that `imfuse serve` serves to `imfuse client`."""

import contextlib
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from imfuse.cli import main
from mlflow_server import mlflow_server  # noqa: F401 - the shared real `mlflow server`
from serving_fixtures import free_port, start_serve_process

# 128 px, the main job's size: below it the 256 px base model (and so its fine-tune) styles
# about as well as identity or worse (on an AVX2-only AMD EPYC: 1.02x identity's style loss
# at 64 px, refused there while blessed on an AVX512 machine; 1.6x at 96 px), so the verdict
# would depend on the CPU. At 128 px it scores 0.37x identity there, in the same time.
TINY = ["--variant", "reduced", "--steps", "20", "--image-size", "128", "--batch-size", "2",
        "--eval-max-pairs", "4", "--gatys-steps", "0"]



@pytest.fixture(scope="module")
def local_run(mlflow_server, tmp_path_factory):  # noqa: F811
    workdir = tmp_path_factory.mktemp("pipeline") / "work"
    # Other tests may have crowned a champion of imfuse-reduced on the shared server:
    # the gate tolerance keeps this run's verdict about beating the identity baseline.
    argv = ["pipeline", "run", "--local", "--workdir", str(workdir), "--mlflow-uri", mlflow_server,
            "--gate-tolerance", "1e9", *TINY]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return {"code": code, "out": printed.getvalue(), "workdir": workdir, "uri": mlflow_server}


def test_local_run_registers_and_publishes_a_version(local_run):
    out = local_run["out"]
    assert local_run["code"] == 0, out[-3000:]
    base = local_run["workdir"] / "serving" / "imfuse"
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
    assert versions == [1]
    assert (base / "1" / "saved_model.pb").is_file()
    assert f"imfuse serve --model-name imfuse --model-base-path {base}" in out
    assert "imfuse client stylize --target localhost:8500" in out
    assert f"imfuse ui --mlflow-uri {local_run['uri']}" in out

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=local_run["uri"], registry_uri=local_run["uri"])
    challenger = client.get_model_version_by_alias("imfuse-reduced", "challenger")
    assert f"Registered imfuse-reduced version {challenger.version} " in out
    assert client.get_model_version_by_alias("imfuse-reduced", "champion").version == challenger.version
    assert challenger.tags["imfuse.serving_version"] == "1"
    assert challenger.tags["imfuse.serving_path"] == str(base / "1")
    run = client.get_run(challenger.run_id)
    assert run.data.tags["imfuse.blessed"] == "true"
    assert run.data.metrics["train/loss"] > 0 and "eval/style_loss_unseen" in run.data.metrics
    assert [a.path for a in client.list_artifacts(challenger.run_id, "model")] == ["model/model.keras", "model/saved_model"]
    # Serving runs exactly the registered SavedModel: same graph and same variables.
    registered = client.download_artifacts(challenger.run_id, "model/saved_model", str(local_run["workdir"] / "dl"))
    for part in ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"):
        assert (base / "1" / part).read_bytes() == (local_run["workdir"] / "dl" / "saved_model" / part).read_bytes()
    assert registered.endswith("saved_model")


STAGE_LINE = re.compile(r"^  (prepare data|train|evaluate|register|export \+ deploy) +(SUCCESS|CACHED|FAILED|SKIPPED) ")


def test_terminal_shows_one_line_per_stage_and_the_log_file_the_rest(local_run):
    """The person sees a line per stage (status, duration, key metric); kfp.local's executor
    JSON and the tasks' logs go to the log file named on the first line and at the end."""
    out = local_run["out"]
    assert local_run["code"] == 0, out[-3000:]
    lines = out.splitlines()
    assert "full log: " in lines[0]
    log = Path(lines[0].split("full log: ", 1)[1])
    assert log.parent == local_run["workdir"] / "logs" and log.is_file()
    assert f"Full log of this run: {log}" in out
    stages = [m.groups() for m in map(STAGE_LINE.match, lines) if m]
    names = ("prepare data", "train", "evaluate", "register", "export + deploy")
    assert stages == [(name, "SUCCESS") for name in names]
    by_stage = {m.group(1): line for line in lines if (m := STAGE_LINE.match(line))}
    assert re.search(r"SUCCESS +\S+  \d+ images accepted, \d+ quarantined", by_stage["prepare data"])
    assert re.search(r"20 steps, loss [0-9.e+]+, [0-9.]+ img/s$", by_stage["train"])
    assert "blessed: candidate eval/style_ratio_unseen" in by_stage["evaluate"]
    assert re.search(r"imfuse-reduced version \d+ \(challenger, champion\)$", by_stage["register"])
    served = local_run["workdir"] / "serving" / "imfuse" / "1"
    assert by_stage["export + deploy"].endswith(f"serving version 1 at {served}")
    assert sum(line.endswith("running ...") for line in lines) == 5  # not a terminal: no live line
    for noise in ("executor_input", "KFP Executor", '"outputFile"', "Streamed logs", "train:  "):
        assert noise not in out, noise
    assert len(lines) < 30, out
    text = log.read_text(encoding="utf-8")
    for task in ("prepare-data", "train-model", "evaluate-model", "register-model", "export-deploy-model"):
        assert f"Executing task '{task}" in text, task
    assert text.count("Got executor_input") == 5 and text.count("Wrote executor output file") == 5
    assert "train: 100%|" in text and "Pipeline 'imfuse-training' finished with status SUCCESS" in text


def test_served_version_stylizes_over_grpc(local_run, tmp_path):
    assert local_run["code"] == 0
    base = local_run["workdir"] / "serving" / "imfuse"
    port = free_port()
    proc, _log = start_serve_process(
        ["--model-name", "imfuse", "--model-base-path", str(base), "--port", str(port),
         "--rest-port", "0", "--host", "127.0.0.1"],
        tmp_path / "serve.log", timeout_s=90,
    )
    try:
        content, style = tmp_path / "content.png", tmp_path / "style.png"
        Image.new("RGB", (48, 40), (200, 120, 40)).save(content)
        Image.effect_noise((32, 32), 60).convert("RGB").save(style)
        out = tmp_path / "stylized.png"
        assert main(["client", "stylize", "--target", f"127.0.0.1:{port}", str(content), str(style), "-o", str(out)]) == 0
        image = Image.open(io.BytesIO(out.read_bytes()))
        assert image.format == "PNG" and image.size == (48, 40)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_refused_first_candidate_leaves_the_base_model_served(tmp_path):
    """Nothing served yet and the fine-tune refused by the gate: the shipped base model it was
    gated against is exported instead, and the summary says so (never 'Registered ...')."""
    from pipelines.runner import LocalRunResult, PipelineParams, _serve_base_model, next_steps

    base = tmp_path / "serving" / "imfuse"
    result = LocalRunResult(workdir=tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            model_name="imfuse", model_base_path=base)
    _serve_base_model(result, PipelineParams(variant="reduced", init_from="auto"))
    assert result.serving and not result.blessed and result.serving_version == 1
    assert (base / "1" / "saved_model.pb").is_file()
    summary = next_steps(result)
    assert "shipped base model is served instead" in summary and "Registered" not in summary
    assert f"--model-base-path {base}" in summary

    kept = LocalRunResult(workdir=tmp_path, tracking_uri=result.tracking_uri, model_name="imfuse",
                          model_base_path=base, serving_version=1, kept_serving=True)
    summary = next_steps(kept)
    assert kept.serving and not kept.blessed
    assert "version 1, which an earlier run published, stays served" in summary and "Registered" not in summary
    assert f"--model-base-path {base}" in summary

    other = LocalRunResult(workdir=tmp_path, tracking_uri=result.tracking_uri, model_name="imfuse",
                           model_base_path=tmp_path / "s2" / "imfuse")
    _serve_base_model(other, PipelineParams(variant="reduced", init_from=str(tmp_path / "own.keras")))
    assert not other.serving  # gated against the user's own model, not the base: nothing to fall back to
