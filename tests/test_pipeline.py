"""The compiled KFP pipeline (checked-in YAML) and the `imfuse pipeline` commands' errors."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imfuse.cli import main

REPO = Path(__file__).resolve().parents[1]
COMPILED = REPO / "pipelines" / "imfuse_pipeline.yaml"
PARAMETERS = {
    "variant", "steps", "image_size", "batch_size", "content_source", "styles_source", "mlflow_uri",
    "serving_base_path", "model_name", "eval_max_pairs", "gatys_steps", "gate_tolerance", "reference_styles", "promote",
    "init_from", "learning_rate", "teacher", "distill_only", "workers",
}
WORKERS_CONDITION = "int(inputs.parameter_values['pipelinechannel--workers']) > 0"


def _compile(tmp_path: Path, registry: str | None = None) -> Path:
    """`imfuse pipeline compile` in a fresh process (the image prefix is read at import)."""
    env = {k: v for k, v in os.environ.items() if k != "IMFUSE_IMAGE_REGISTRY"}
    if registry is not None:
        env["IMFUSE_IMAGE_REGISTRY"] = registry
    out = tmp_path / "pipeline.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "imfuse", "pipeline", "compile", "-o", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def compiled():
    spec, platform = yaml.safe_load_all(COMPILED.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _all_tasks(spec) -> dict[str, dict]:
    """task name -> task spec, over the root DAG and every branch DAG."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def _executor(spec, task) -> tuple[str, dict]:
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return label, spec["deploymentSpec"]["executors"][label]["container"]


def test_checked_in_yaml_is_up_to_date(tmp_path):
    fresh = _compile(tmp_path).read_text()
    assert fresh == COMPILED.read_text(), "pipelines/imfuse_pipeline.yaml is stale: run `imfuse pipeline compile`"


def test_image_registry_prefix_comes_from_the_environment(tmp_path):
    spec, _ = yaml.safe_load_all(_compile(tmp_path, "registry.example.com/ml").read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.com/ml/imfuse:0.1.0", "registry.example.com/ml/imfuse:0.1.0-gpu"}


def test_pipeline_has_the_parameters_and_the_tasks_of_each_branch(compiled):
    spec, _ = compiled
    assert spec["pipelineInfo"]["name"] == "imfuse-training"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == PARAMETERS
    assert params["variant"]["defaultValue"] == "reduced"
    tasks = _all_tasks(spec)
    kinds = sorted(re.sub(r"-\d+$", "", t["componentRef"]["name"].removeprefix("comp-")) for t in tasks.values()
                   if "executorLabel" in spec["components"][t["componentRef"]["name"]])
    # prepare once; train (in-pod: one per variant branch; or the TFJob launcher), then
    # evaluate, register, export after each of the three
    assert kinds == sorted(["prepare-data", "train-model", "train-model", "train-distributed-model"]
                           + ["evaluate-model", "register-model", "export-deploy-model"] * 3)
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values() if t.get("triggerPolicy", {}).get("condition")]
    assert "inputs.parameter_values['pipelinechannel--variant'] == 'full'" in conditions
    assert "!(inputs.parameter_values['pipelinechannel--variant'] == 'full')" in conditions
    assert WORKERS_CONDITION in conditions and f"!({WORKERS_CONDITION})" in conditions
    blessed = [c for c in conditions if "evaluate-model" in c]
    assert len(blessed) == 3 and all(c.endswith("== true") for c in blessed)


def test_gpu_only_on_the_full_variant_train_task(compiled):
    spec, platform = compiled
    tasks = _all_tasks(spec)
    gpu, cpu = [], []
    for name, task in tasks.items():
        if not name.startswith("train-model"):
            continue
        label, container = _executor(spec, task)
        accelerator = container.get("resources", {}).get("accelerator")
        (gpu if accelerator else cpu).append((name, label, container, accelerator))
    assert len(gpu) == 1 and len(cpu) == 1
    _, label, container, accelerator = gpu[0]
    assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
    assert container["image"] == "imfuse:0.1.0-gpu"
    assert platform[label]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert platform[label]["tolerations"][0]["key"] == "nvidia.com/gpu"
    # the GPU task sits in the variant == 'full' branch
    branch = next(c for c in spec["components"].values() if gpu[0][0] in c.get("dag", {}).get("tasks", {}))
    parent = next(t for t in _all_tasks(spec).values() if spec["components"][t["componentRef"]["name"]] is branch)
    assert parent["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--variant'] == 'full'"
    _, cpu_label, cpu_container, _ = cpu[0]
    assert cpu_container["image"] == "imfuse:0.1.0"
    assert "nodeSelector" not in platform.get(cpu_label, {})
    for container in (cpu_container, container):
        assert container["resources"]["cpuRequest"] > 0 and container["resources"]["memoryRequest"] > 0


def _parent(spec, component: dict) -> tuple[str | None, dict | None]:
    """(task name, task) whose componentRef is `component`; (None, None) for the root DAG."""
    for name, task in _all_tasks(spec).items():
        if spec["components"].get(task.get("componentRef", {}).get("name", "")) is component:
            return name, task
    return None, None


def _root_source(spec, task_name: str, input_name: str) -> tuple[str, list[str]]:
    """The root pipeline parameter that feeds `input_name` of `task_name`, and the conditions
    of the branches on the way (innermost first)."""
    component = next((c for c in spec["components"].values() if task_name in c.get("dag", {}).get("tasks", {})),
                     spec["root"])
    param = component["dag"]["tasks"][task_name]["inputs"]["parameters"][input_name]["componentInputParameter"]
    conditions = []
    while component is not spec["root"]:
        name, task = _parent(spec, component)
        assert task is not None, f"no task runs the component of {task_name}"
        if task.get("triggerPolicy", {}).get("condition"):
            conditions.append(task["triggerPolicy"]["condition"])
        param = task["inputs"]["parameters"][param]["componentInputParameter"]
        component = next((c for c in spec["components"].values() if name in c.get("dag", {}).get("tasks", {})),
                         spec["root"])
    return param, conditions


def test_workers_parameter_defaults_to_in_pod_training_and_reaches_the_tfjob_task(compiled):
    spec, platform = compiled
    workers = spec["root"]["inputDefinitions"]["parameters"]["workers"]
    assert workers["parameterType"] == "NUMBER_INTEGER" and workers["defaultValue"] == 0
    tasks = _all_tasks(spec)
    (launcher,) = [n for n in tasks if n.startswith("train-distributed-model")]
    source, conditions = _root_source(spec, launcher, "workers")
    assert source == "workers" and conditions == [WORKERS_CONDITION]
    for param in ("variant", "steps", "image_size", "batch_size", "mlflow_uri", "init_from", "learning_rate",
                  "teacher", "distill_only"):
        assert _root_source(spec, launcher, param)[0] == param, param
    inputs = tasks[launcher]["inputs"]["parameters"]
    assert inputs["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert inputs["cpu_image"]["runtimeValue"]["constant"] == "imfuse:0.1.0"
    assert inputs["gpu_image"]["runtimeValue"]["constant"] == "imfuse:0.1.0-gpu"
    # the in-pod train tasks only run when workers is 0: both sit under the negated condition
    for name in tasks:
        if name.startswith("train-model"):
            _, way = _root_source(spec, name, "variant")
            assert way[-1] == f"!({WORKERS_CONDITION})", name
    # the launcher is a small CPU pod with the shared claim; the replicas hold the GPUs
    label, container = _executor(spec, tasks[launcher])
    assert "accelerator" not in container["resources"] and container["image"] == "imfuse:0.1.0"
    assert container["resources"]["cpuLimit"] <= 1
    assert platform[label]["pvcMount"] == [
        {"constant": "imfuse-training", "mountPath": "/shared",
         "pvcNameParameter": {"runtimeValue": {"constant": "imfuse-training"}}}]
    assert "nodeSelector" not in platform[label]
    # the model it outputs is what its branch evaluates
    evaluated = [n for n, t in tasks.items() if n.startswith("evaluate-model")
                 and t["inputs"]["artifacts"]["model"].get("taskOutputArtifact", {}).get("producerTask") == launcher]
    assert len(evaluated) == 1


def test_the_tfjob_replicas_get_the_in_pod_train_resources(compiled):
    from components.cluster import TRAIN_RESOURCES

    spec, _ = compiled
    tasks = _all_tasks(spec)
    for name, task in tasks.items():
        if not name.startswith("train-model"):
            continue
        _, container = _executor(spec, task)
        res = TRAIN_RESOURCES["gpu" if container["resources"].get("accelerator") else "cpu"]
        assert container["resources"]["resourceCpuRequest"] == res["requests"]["cpu"]
        assert container["resources"]["resourceMemoryLimit"] == res["limits"]["memory"]


def test_caching_and_retries_are_explicit(compiled):
    spec, platform = compiled
    for name, task in _all_tasks(spec).items():
        if "componentRef" not in task or "executorLabel" not in spec["components"][task["componentRef"]["name"]]:
            continue
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        assert cached == name.startswith("prepare-data"), f"{name}: caching {cached}"
        retry = task["retryPolicy"]
        assert retry["maxRetryCount"] >= 1 and retry["backoffDuration"].endswith("s"), name
        label, container = _executor(spec, task)
        assert "pip install" not in " ".join(container["command"]), f"{name} installs packages at start"
        env = platform[label]
        assert env["configMapAsEnv"][0]["configMapName"] == "imfuse-settings" and env["configMapAsEnv"][0]["optional"]
        assert env["secretAsEnv"][0]["secretName"] == "imfuse-s3" and env["secretAsEnv"][0]["optional"]


def test_submit_to_an_unreachable_host_is_one_line_exit_2(capsys):
    assert main(["pipeline", "submit", "--host", "http://127.0.0.1:9", "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach Kubeflow Pipelines at http://127.0.0.1:9" in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--cron", "every sunday"], "--cron"),
        (["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * 0"], "cannot reach"),
        (["pipeline", "submit", "--host", "localhost:8080"], "--host must be an http(s):// URL"),
        (["pipeline", "submit", "--host", "http://127.0.0.1:9", "--steps", "0"], "--steps must be at least 1"),
        (["pipeline", "run", "--local", "--content-source", "nowhere/"], "give both"),
        (["pipeline", "run", "--local", "--content-source", "no/such", "--styles-source", "x"], "no such file"),
        (["pipeline", "run", "--local", "--image-size", "8"], "--image-size must be at least 32"),
        (["pipeline", "run", "--local", "--mlflow-uri", "http://127.0.0.1:9"], "cannot reach the MLflow tracking server"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "imfuse-work").exists()


def test_cron_gets_kfp_seconds_field():
    from pipelines.runner import normalize_cron

    assert normalize_cron("0 3 * * 0") == "0 0 3 * * 0"
    assert normalize_cron("30 0 3 * * 0") == "30 0 3 * * 0"


@pytest.fixture()
def kfp_api(monkeypatch):
    """A reachable healthz endpoint and a recording stand-in for kfp.Client's run calls."""
    import http.server
    import threading

    import kfp

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    calls = {}

    class Client:
        def __init__(self, host):
            calls["host"] = host

        def create_run_from_pipeline_package(self, path, arguments, run_name, experiment_name):
            calls["run"] = (yaml.safe_load_all(Path(path).read_text()).__next__()["pipelineInfo"]["name"],
                            arguments, experiment_name)
            return type("Run", (), {"run_id": "run-1"})()

        def create_experiment(self, name):
            return type("Exp", (), {"experiment_id": f"exp-{name}"})()

        def create_recurring_run(self, **kwargs):
            calls["recurring"] = kwargs
            return type("Job", (), {"recurring_run_id": "job-1"})()

    monkeypatch.setattr(kfp, "Client", Client)
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


def test_submit_and_schedule_pass_the_parameters(kfp_api, capsys):
    host, calls = kfp_api
    assert main(["pipeline", "submit", "--host", host + "/", "--variant", "full", "--steps", "500",
                 "--content-source", "s3://b/c", "--styles-source", "s3://b/s"]) == 0
    assert calls["host"] == host
    assert calls["run"] == ("imfuse-training", {"variant": "full", "steps": 500, "content_source": "s3://b/c",
                                                "styles_source": "s3://b/s"}, "imfuse")
    assert f"submitted run run-1: {host}/#/runs/details/run-1" in capsys.readouterr().out
    assert main(["pipeline", "schedule", "--host", host, "--cron", "0 3 * * 0", "--name", "weekly",
                 "--refresh-data", "--no-promote"]) == 0
    job = calls["recurring"]
    assert (job["job_name"], job["cron_expression"], job["experiment_id"]) == ("weekly", "0 0 3 * * 0", "exp-imfuse")
    assert job["params"] == {"promote": False} and job["enable_caching"] is False and job["max_concurrency"] == 1
    assert Path(job["pipeline_package_path"]).suffix == ".yaml"
