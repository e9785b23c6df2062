"""The distributed train step (components/steps/train_distributed.py) without a cluster:
the TFJob render, the status line, waiting, re-attaching on retry, and the whole step
against a fake Training Operator that plays the chief."""

import json
from pathlib import Path

import pytest

from components.cluster import GPU_RESOURCE, SETTINGS_ENV, TRAIN_RESOURCES
from components.steps import train_distributed as td
from components.steps.train import train_args

ARGS = ("DATA", "RUN", "full", 7, 48, 2, "http://mlflow:5000", "auto", 1e-4, "lite", True)


def _job(gpu=False, workers=2, **kw):
    args = td.job_args(*ARGS)
    return td.render_tfjob("imfuse-train-abc", "kubeflow", workers=workers, args=args, image="imfuse:0.1.0",
                           gpu=gpu, **kw)


def _container(job, replica="Chief"):
    (container,) = job["spec"]["tfReplicaSpecs"][replica]["template"]["spec"]["containers"]
    return container


# ---------------------------------------------------------------------------- render
def test_job_args_are_the_in_pod_arguments_plus_multiworker():
    from imfuse.cli import build_parser

    args = td.job_args(*ARGS)
    assert args == train_args(*ARGS) + ["--strategy", "multiworker"]
    parsed = build_parser().parse_args(args)
    assert (parsed.data, parsed.out, parsed.variant, parsed.steps, parsed.strategy) == ("DATA", "RUN", "full", 7,
                                                                                         "multiworker")
    assert not parsed.register


def test_render_has_a_chief_and_n_workers_running_the_same_command():
    job = _job(workers=3, env={"MLFLOW_TRACKING_URI": "http://m:5000"}, run_id="run-1")
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")
    assert job["metadata"] == {
        "name": "imfuse-train-abc", "namespace": "kubeflow", "labels": td.LABELS,
        "annotations": {"imfuse/pipeline-run-id": "run-1"},
    }
    specs = job["spec"]["tfReplicaSpecs"]
    assert list(specs) == ["Chief", "Worker"]
    assert (specs["Chief"]["replicas"], specs["Worker"]["replicas"]) == (1, 3)
    assert {s["restartPolicy"] for s in specs.values()} == {"OnFailure"}
    chief, worker = _container(job), _container(job, "Worker")
    assert chief == worker
    assert chief["name"] == "tensorflow" and chief["image"] == "imfuse:0.1.0"
    assert chief["command"] == ["imfuse"] and chief["args"] == td.job_args(*ARGS)
    assert chief["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
    env = {e["name"]: e for e in chief["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://m:5000" and env["HOME"]["value"] == "/tmp"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "imfuse-s3", "key": key, "optional": True}
    pod = job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "imfuse-training"
    assert {m["mountPath"]: m["name"] for m in chief["volumeMounts"]} == {"/shared": "shared", "/tmp": "tmp"}
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "None"


def test_cpu_replicas_get_the_in_pod_cpu_resources_and_no_gpu():
    job = _job(gpu=False)
    assert _container(job)["resources"] == TRAIN_RESOURCES["cpu"]
    pod = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_gpu_replicas_get_one_gpu_each_and_the_gpu_nodes():
    job = _job(gpu=True)
    for replica in ("Chief", "Worker"):
        res = _container(job, replica)["resources"]
        assert res["requests"][GPU_RESOURCE] == res["limits"][GPU_RESOURCE] == 1
        assert {k: v for k, v in res["requests"].items() if k != GPU_RESOURCE} == TRAIN_RESOURCES["gpu"]["requests"]
        pod = job["spec"]["tfReplicaSpecs"][replica]["template"]["spec"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod["tolerations"] == [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    assert GPU_RESOURCE not in TRAIN_RESOURCES["gpu"]["requests"], "the render must not change the shared constant"


@pytest.mark.parametrize("workers", [0, -1, 65, True, 1.5])
def test_render_refuses_a_bad_worker_count(workers):
    with pytest.raises(ValueError, match="workers must be an integer"):
        _job(workers=workers)


def test_render_refuses_bad_names_and_a_single_worker_command():
    with pytest.raises(ValueError, match="DNS label"):
        td.render_tfjob("Bad_Name", "ns", workers=1, args=td.job_args(*ARGS), image="i:1", gpu=False)
    with pytest.raises(ValueError, match="multiworker"):
        td.render_tfjob("ok", "ns", workers=1, args=train_args(*ARGS), image="i:1", gpu=False)


def test_job_names_are_stable_per_run_and_fit_pod_names():
    name = td.tfjob_name("3F2a-9c1e-4b7d-8e0f-1234567890ab")
    assert name == td.tfjob_name("3F2a-9c1e-4b7d-8e0f-1234567890ab") == "imfuse-train-3f2a9c1e4b7d"
    assert len(f"{name}-worker-63") <= 63
    random_names = {td.tfjob_name("") for _ in range(3)}
    assert len(random_names) == 3 and all(td._DNS_LABEL.match(n) for n in random_names)
    assert td.job_paths("/shared/", name) == (f"/shared/{name}/data", f"/shared/{name}/run")


def test_forwarded_env_is_the_settings_only():
    environ = {"MLFLOW_TRACKING_URI": "http://m", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "IMFUSE_MODEL_NAME": "",
               "PATH": "/bin"}
    assert td.forwarded_env(environ) == {"MLFLOW_TRACKING_URI": "http://m"}
    assert set(td.forwarded_env({k: "x" for k in SETTINGS_ENV})) == set(SETTINGS_ENV)


# ---------------------------------------------------------------------------- status
def _status(*conditions, replicas=None):
    job = _job()
    job["status"] = {"conditions": [{"type": t, "status": s, "message": m} for t, s, m in conditions]}
    if replicas:
        job["status"]["replicaStatuses"] = replicas
    return job


def test_job_state_follows_the_operator_conditions():
    assert td.job_state(_job()) == ("Pending", "")
    assert td.job_state(_status(("Created", "True", "created")))[0] == "Created"
    running = _status(("Created", "True", ""), ("Running", "True", "running"))
    assert td.job_state(running) == ("Running", "running")
    done = _status(("Created", "True", ""), ("Running", "False", ""), ("Succeeded", "True", "ok"))
    assert td.job_state(done) == ("Succeeded", "ok")
    failed = _status(("Created", "True", ""), ("Running", "True", ""), ("Failed", "True", "chief exited 1"))
    assert td.job_state(failed) == ("Failed", "chief exited 1")


def test_status_line_is_one_line_with_counts_and_why_pods_wait():
    job = _status(("Created", "True", ""), replicas={"Chief": {"active": 1}, "Worker": {"active": 1}})
    pods = [{"name": "imfuse-train-abc-worker-1", "phase": "Pending", "reason": "Unschedulable",
             "message": "0/1 nodes are available:\n1 Insufficient nvidia.com/gpu."},
            {"name": "imfuse-train-abc-chief-0", "phase": "Running", "reason": "", "message": ""}]
    line = td.status_line(job, pods)
    assert "\n" not in line
    assert line.startswith("TFJob imfuse-train-abc: Created | chief 1 active of 1; worker 1 active of 2")
    assert "imfuse-train-abc-worker-1 Pending: Unschedulable: 0/1 nodes are available: 1 Insufficient" in line
    assert "chief-0" not in line
    failed = _status(("Failed", "True", "x" * 1000))
    assert len(td.status_line(failed)) == 400 and td.status_line(failed).endswith("...")


def test_wait_echoes_changes_only_and_rides_out_api_errors():
    created = _status(("Created", "True", ""))
    running = _status(("Created", "True", ""), ("Running", "True", ""), replicas={"Chief": {"active": 1}})
    done = _status(("Succeeded", "True", "done"), replicas={"Chief": {"succeeded": 1}})
    answers = [created, created, ConnectionError("reset"), running, running, done]

    def get(name):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    lines = []
    state, job = td.wait_for_tfjob(get, "imfuse-train-abc", poll_s=0, sleep=lambda s: None, echo=lines.append)
    assert state == "Succeeded" and job is done and not answers
    assert [line.split(" | ")[0] for line in lines] == [
        "TFJob imfuse-train-abc: Created",
        "TFJob imfuse-train-abc: status unavailable (ConnectionError: reset); retrying",
        "TFJob imfuse-train-abc: Running",
        "TFJob imfuse-train-abc: Succeeded",
    ]


def test_wait_gives_up_on_a_deleted_job_and_on_a_dead_api():
    def gone(name):
        raise td.JobGone(name)

    with pytest.raises(RuntimeError, match="was deleted"):
        td.wait_for_tfjob(gone, "j", poll_s=0, sleep=lambda s: None, echo=lambda s: None)

    def dead(name):
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        td.wait_for_tfjob(dead, "j", poll_s=0, sleep=lambda s: None, echo=lambda s: None, max_errors=2)


# ---------------------------------------------------------------------------- fake operator
class FakeOperator:
    """tfjobs in memory. On create it checks the data reached the shared volume and, as the
    chief would, writes the run files to --out; each get then advances the job one state."""

    def __init__(self, outcome="Succeeded", existing=None, conflict=False):
        self.namespace = "kubeflow"
        self.jobs = dict(existing or {})
        self.outcome, self.conflict = outcome, conflict
        self.created, self.deleted, self.gets = [], [], 0

    def create(self, job):
        if self.conflict:
            raise td.AlreadyExists(job["metadata"]["name"])
        args = job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["args"]
        data, run = Path(args[args.index("--data") + 1]), Path(args[args.index("--out") + 1])
        assert (data / "manifest.json").is_file(), "the dataset is on the shared volume before the job starts"
        if self.outcome == "Succeeded":
            (run / "model.keras").write_bytes(b"model")
            (run / "mlflow_run.json").write_text(json.dumps({"run_id": "r-1", "tracking_uri": "http://m"}))
            (run / "history.jsonl").write_text(json.dumps({"step": 7, "metrics": {"train/loss": 0.5}}) + "\n")
        (run / "checkpoints").mkdir(exist_ok=True)
        self.created.append(job)
        self.jobs[job["metadata"]["name"]] = {**job, "_states": ["Created", "Running", self.outcome]}

    def get(self, name):
        self.gets += 1
        if name not in self.jobs:
            raise td.JobGone(name)
        job = self.jobs[name]
        states = job.get("_states", [])
        state = states.pop(0) if len(states) > 1 else (states[0] if states else "Running")
        return {**job, "status": {"conditions": [{"type": state, "status": "True", "message": f"job {state}"}]}}

    def delete(self, name):
        self.deleted.append(name)
        self.jobs.pop(name, None)

    def pods(self, name):
        return [{"name": f"{name}-chief-0", "phase": "Running", "reason": "", "message": ""}]

    def chief_log(self, name):
        return "Traceback: chief blew up"


@pytest.fixture()
def dataset(tmp_path):
    data = tmp_path / "artefact" / "dataset"
    (data / "content").mkdir(parents=True)
    (data / "manifest.json").write_text("{}")
    (data / "content" / "a.jpg").write_bytes(b"jpg")
    return data


def _stage(dataset, tmp_path, api, lines, workers=2, variant="reduced"):
    return td.train_distributed_stage(
        str(dataset), str(tmp_path / "model"), workers, variant, 7, 32, 2, "", "auto", 1e-4, "lite", True,
        run_id="0123abcd-4567-89ef", cpu_image="reg/imfuse:0.1.0", gpu_image="reg/imfuse:0.1.0-gpu",
        shared_dir=str(tmp_path / "shared"), api=api, poll_s=0, echo=lines.append,
        environ={"MLFLOW_TRACKING_URI": "http://m"},
    )


def test_step_runs_the_job_and_outputs_the_chiefs_model(dataset, tmp_path):
    api, lines = FakeOperator(), []
    info = _stage(dataset, tmp_path, api, lines, variant="full")
    name = "imfuse-train-0123abcd4567"
    (job,) = api.created
    assert job["metadata"]["name"] == name and job["metadata"]["namespace"] == "kubeflow"
    assert _container(job)["image"] == "reg/imfuse:0.1.0-gpu"
    assert _container(job)["resources"]["limits"][GPU_RESOURCE] == 1
    assert {e["name"]: e.get("value") for e in _container(job)["env"]}["MLFLOW_TRACKING_URI"] == "http://m"
    model = tmp_path / "model"
    assert (model / "model.keras").read_bytes() == b"model" and (model / "mlflow_run.json").is_file()
    assert not (model / "checkpoints").exists()
    assert info == {"mlflow_run_id": "r-1", "tracking_uri": "http://m", "variant": "full", "steps": 7,
                    "image_size": 32, "batch_size": 2, "metrics": {"train/loss": 0.5}, "tfjob": name, "workers": 2}
    assert not (tmp_path / "shared" / name).exists(), "the job's folder is removed after success"
    assert lines[0] == f"TFJob {name}: created (chief + 2 workers)"
    assert [line.split(" | ")[0] for line in lines[1:]] == [f"TFJob {name}: {s}" for s in ("Created", "Running",
                                                                                           "Succeeded")]


def test_reduced_variant_uses_the_cpu_image(dataset, tmp_path):
    api = FakeOperator()
    _stage(dataset, tmp_path, api, [], workers=1)
    assert _container(api.created[0])["image"] == "reg/imfuse:0.1.0"
    assert GPU_RESOURCE not in _container(api.created[0])["resources"]["limits"]


def test_failed_job_fails_the_step_with_the_chiefs_log_and_keeps_the_checkpoints(dataset, tmp_path):
    api, lines = FakeOperator(outcome="Failed"), []
    with pytest.raises(RuntimeError, match=r"TFJob imfuse-train-0123abcd4567 failed: job Failed .*kubectl -n kubeflow"):
        _stage(dataset, tmp_path, api, lines)
    assert any("Traceback: chief blew up" in line for line in lines)
    assert (tmp_path / "shared" / "imfuse-train-0123abcd4567" / "run" / "checkpoints").is_dir()
    assert not (tmp_path / "model").exists()


def test_a_retry_attaches_to_a_running_job_without_recopying(dataset, tmp_path, monkeypatch):
    copies = []
    monkeypatch.setattr(td.shutil, "copytree", lambda *a, **kw: copies.append(a))
    name = "imfuse-train-0123abcd4567"
    run = tmp_path / "shared" / name / "run"
    run.mkdir(parents=True)
    for file, text in (("model.keras", "m"), ("mlflow_run.json", '{"run_id": "r-0"}'), ("history.jsonl", "")):
        (run / file).write_text(text)
    api, lines = FakeOperator(existing={name: {"metadata": {"name": name}, "_states": ["Running", "Succeeded"]}}), []
    info = _stage(dataset, tmp_path, api, lines)
    assert api.created == [] and api.deleted == [] and copies == []
    assert info["mlflow_run_id"] == "r-0"
    assert lines[0] == f"TFJob {name}: attaching to the job of an earlier try (Running)"


def test_a_retry_replaces_a_failed_job_and_keeps_its_checkpoints(dataset, tmp_path):
    name = "imfuse-train-0123abcd4567"
    ckpt = tmp_path / "shared" / name / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "ckpt-4.index").write_bytes(b"i")
    api = FakeOperator(existing={name: {"metadata": {"name": name}, "_states": ["Failed"]}})
    seen = {}
    original = api.create

    def create(job):
        seen["checkpoint_kept"] = (ckpt / "ckpt-4.index").is_file()
        original(job)

    api.create = create
    lines = []
    _stage(dataset, tmp_path, api, lines)
    assert api.deleted == [name] and len(api.created) == 1 and seen["checkpoint_kept"]
    assert lines[0] == f"TFJob {name}: replacing the failed job of an earlier try"


def test_launch_attaches_when_another_try_created_the_job_first(dataset, tmp_path):
    api = FakeOperator(conflict=True)
    lines, prepared = [], []
    assert td.launch(api, _job(), lambda: prepared.append(1), echo=lines.append) == "attached"
    assert prepared == [1] and "created concurrently" in lines[-1]


# ---------------------------------------------------------------------------- thin layer
def test_pod_summary_says_why_a_pod_is_not_running():
    from kubernetes.client import (V1ContainerState, V1ContainerStateWaiting, V1ContainerStatus, V1ObjectMeta, V1Pod,
                                   V1PodCondition, V1PodStatus)

    pending = V1Pod(metadata=V1ObjectMeta(name="j-worker-0"), status=V1PodStatus(
        phase="Pending", conditions=[V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable",
                                                    message="0/1 nodes are available")]))
    assert td.pod_summary(pending) == {"name": "j-worker-0", "phase": "Pending", "reason": "Unschedulable",
                                       "message": "0/1 nodes are available"}
    pulling = V1Pod(metadata=V1ObjectMeta(name="j-chief-0"), status=V1PodStatus(phase="Pending", container_statuses=[
        V1ContainerStatus(name="tensorflow", image="i", image_id="", ready=False, restart_count=0,
                          state=V1ContainerState(waiting=V1ContainerStateWaiting(reason="ErrImagePull", message="no")))]))
    assert td.pod_summary(pulling)["reason"] == "ErrImagePull"


def test_api_errors_become_gone_and_exists():
    from kubernetes.client.exceptions import ApiException

    assert isinstance(td.KubeTFJobs._translate(ApiException(status=404)), td.JobGone)
    assert isinstance(td.KubeTFJobs._translate(ApiException(status=409)), td.AlreadyExists)
    other = ApiException(status=403)
    assert td.KubeTFJobs._translate(other) is other


def test_outside_a_cluster_the_step_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(RuntimeError, match="needs a Kubernetes cluster") as err:
        td.KubeTFJobs()
    assert "\n" not in str(err.value)
