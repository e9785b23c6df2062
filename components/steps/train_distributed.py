"""Pipeline step 2, distributed: train in a Kubeflow Training Operator `TFJob` (chief + workers).

The pipeline runs this step instead of the in-pod one when its `workers` parameter is
above 0. The step itself is a light pod; the training runs in the TFJob's replicas:

1. copy the dataset artefact to the shared volume (`SHARED_PVC`, a ReadWriteMany claim
   that this pod and every replica mount at `SHARED_MOUNT`);
2. create the TFJob: one `Chief` and `workers` `Worker` replicas, each running
   `imfuse train ... --strategy multiworker` with the arguments the in-pod step uses
   (`train_args`), in the project image (GPU image, one GPU each, GPU node selector and
   toleration for variant `full`); the operator gives each replica its TF_CONFIG;
3. wait for it to succeed or fail, printing a one-line status whenever it changes;
4. copy the chief's run files (model.keras, history, run records) into the `Model`
   artefact exactly as the in-pod step does, and remove the job's folder from the volume.

Every replica restores from the chief's checkpoints under --out, so --out must be on the
shared volume: a replica restarted by the operator (restartPolicy OnFailure) and a retried
step both resume where the chief's last checkpoint left off. The job name comes from the
pipeline run id, so a retried step re-attaches to its job (or replaces a failed one).

`render_tfjob` and the status functions are pure (tests call them without a cluster);
`KubeTFJobs` is the thin layer over the Kubernetes API (CustomObjectsApi for tfjobs,
CoreV1Api for pod status and the chief's log), needing the RBAC in k8s/training/base/rbac.yaml.

Regenerate the example manifest after changing the render:
    python -m components.steps.train_distributed -o k8s/training/tfjob-example.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from components.cluster import (
    GPU_NODE_LABEL,
    GPU_RESOURCE,
    GPUS_PER_REPLICA,
    S3_SECRET,
    S3_SECRET_ENV,
    SETTINGS_ENV,
    SHARED_MOUNT,
    SHARED_PVC,
    TRAIN_RESOURCES,
)

TFJOB_GROUP = "kubeflow.org"
TFJOB_VERSION = "v1"
TFJOB_PLURAL = "tfjobs"
TFJOB_API_VERSION = f"{TFJOB_GROUP}/{TFJOB_VERSION}"
CONTAINER = "tensorflow"  # the Training Operator requires this container name in TFJobs
PORT_NAME, PORT = "tfjob-port", 2222  # the operator's default; TF_CONFIG names it
REPLICA_TYPES = ("Chief", "Worker")
RESTART_POLICY = "OnFailure"
BACKOFF_LIMIT = 3  # pod restarts before the operator marks the job Failed
TTL_SECONDS = 24 * 3600  # finished jobs (and their pods, kept for `kubectl logs`) go after a day
UID = 1000  # the project image's user (components/Dockerfile)
JOB_NAME_LABEL = "training.kubeflow.org/job-name"  # the operator's label on a job's pods
TERMINAL = ("Succeeded", "Failed")
MAX_WORKERS = 64
LABELS = {
    "app.kubernetes.io/name": "imfuse-training",
    "app.kubernetes.io/component": "training",
    "app.kubernetes.io/part-of": "imfuse",
}
# What KubeTFJobs calls, as (apiGroup, resource, verb); k8s/training/base/rbac.yaml grants them (a test checks).
RBAC_NEEDS = (
    (TFJOB_GROUP, TFJOB_PLURAL, "create"),
    (TFJOB_GROUP, TFJOB_PLURAL, "get"),
    (TFJOB_GROUP, TFJOB_PLURAL, "delete"),
    ("", "pods", "list"),
    ("", "pods/log", "get"),
)
EXAMPLE_NAME = "imfuse-train-example"
EXAMPLE_NAMESPACE = "kubeflow"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


# ------------------------------------------------------------------ pure: naming, render
def tfjob_name(run_id: str = "") -> str:
    """'imfuse-train-<12 chars of the run id>' (a random suffix without one): stable across
    retries of one pipeline run, short enough for the replica pods' names."""
    suffix = re.sub(r"[^a-z0-9]", "", run_id.lower())[:12] or uuid.uuid4().hex[:12]
    return f"imfuse-train-{suffix}"


def job_paths(shared_dir: str, name: str) -> tuple[str, str]:
    """(--data, --out) of one job on the shared volume."""
    root = f"{shared_dir.rstrip('/')}/{name}"
    return f"{root}/data", f"{root}/run"


def replica_resources(gpu: bool) -> dict:
    """requests/limits of one replica: the in-pod train task's, plus one GPU on `full`."""
    res = copy.deepcopy(TRAIN_RESOURCES["gpu" if gpu else "cpu"])
    if gpu:
        for part in ("requests", "limits"):
            res[part][GPU_RESOURCE] = GPUS_PER_REPLICA
    return res


def _pod_template(image: str, args: Sequence[str], gpu: bool, pvc: str, mount_path: str,
                  env: Mapping[str, str]) -> dict:
    container_env = [{"name": "HOME", "value": "/tmp"}]  # read-only root: caches go to /tmp
    container_env += [{"name": k, "value": str(v)} for k, v in sorted(env.items())]
    container_env += [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": key, "optional": True}}}
        for key in S3_SECRET_ENV
    ]
    user = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID}  # the pod's and its container's
    spec: dict = {
        "automountServiceAccountToken": False,
        "securityContext": {**user, "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if gpu:
        spec["nodeSelector"] = {GPU_NODE_LABEL[0]: GPU_NODE_LABEL[1]}
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    spec["containers"] = [{
        "name": CONTAINER,
        "image": image,
        "command": ["imfuse"],
        "args": list(args),
        "ports": [{"name": PORT_NAME, "containerPort": PORT}],
        "env": container_env,
        "resources": replica_resources(gpu),
        "securityContext": {
            **user,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "shared", "mountPath": mount_path}, {"name": "tmp", "mountPath": "/tmp"}],
    }]
    spec["volumes"] = [
        {"name": "shared", "persistentVolumeClaim": {"claimName": pvc}},
        {"name": "tmp", "emptyDir": {}},
    ]
    return {
        "metadata": {
            "labels": dict(LABELS),
            # Kubeflow with Istio: a sidecar would keep replicas from finishing.
            "annotations": {"sidecar.istio.io/inject": "false"},
        },
        "spec": spec,
    }


def render_tfjob(
    name: str,
    namespace: str,
    *,
    workers: int,
    args: Sequence[str],
    image: str,
    gpu: bool,
    pvc: str = SHARED_PVC,
    mount_path: str = SHARED_MOUNT,
    env: Mapping[str, str] | None = None,
    run_id: str = "",
) -> dict:
    """The TFJob (kubeflow.org/v1) of one distributed training: a Chief and `workers` Workers,
    each `imfuse <args>` in `image` with the shared claim at `mount_path`.

    `args` is the `imfuse train ... --strategy multiworker` command line (`job_args`); `env`
    holds plain settings (MLflow URI, S3 endpoint) for every replica, the S3 keys come from
    Secret imfuse-s3 when it exists."""
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be an integer from 1 to {MAX_WORKERS}, got {workers!r}")
    if not _DNS_LABEL.match(name) or len(name) > 40:
        raise ValueError(f"TFJob name {name!r} must be a DNS label of at most 40 characters")
    if not image:
        raise ValueError("the TFJob needs the project image")
    if "multiworker" not in args:
        raise ValueError("the replicas must run `imfuse train --strategy multiworker`")
    template = _pod_template(image, args, gpu, pvc, mount_path, env or {})
    metadata: dict = {"name": name, "namespace": namespace, "labels": dict(LABELS)}
    if run_id:
        metadata["annotations"] = {"imfuse/pipeline-run-id": run_id}
    return {
        "apiVersion": TFJOB_API_VERSION,
        "kind": "TFJob",
        "metadata": metadata,
        "spec": {
            "runPolicy": {
                # keep finished pods so `kubectl logs <job>-chief-0` works; the TTL removes them
                "cleanPodPolicy": "None",
                "backoffLimit": BACKOFF_LIMIT,
                "ttlSecondsAfterFinished": TTL_SECONDS,
            },
            "tfReplicaSpecs": {
                replica_type: {
                    "replicas": 1 if replica_type == "Chief" else workers,
                    "restartPolicy": RESTART_POLICY,
                    "template": copy.deepcopy(template),
                }
                for replica_type in REPLICA_TYPES
            },
        },
    }


def job_args(*args) -> list[str]:
    """The in-pod step's `imfuse train` arguments (train_args(*args)) plus `--strategy multiworker`."""
    from components.steps.train import train_args

    return train_args(*args) + ["--strategy", "multiworker"]


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The cluster settings this step got (imfuse-settings), passed on to the replicas."""
    environ = os.environ if environ is None else environ
    return {key: environ[key] for key in SETTINGS_ENV if environ.get(key)}


def example_tfjob() -> dict:
    """The TFJob the step creates for variant `full`, workers=2 and the default parameters
    with the cluster's settings (the committed k8s/training/tfjob-example.yaml)."""
    from components.image import image
    from imfuse.serving.defaults import MODEL_NAME

    data, run = job_paths(SHARED_MOUNT, EXAMPLE_NAME)
    args = job_args(data, run, "full", 1000, 256, 4, "", "auto", 1e-4, "lite", True)
    env = {
        "MLFLOW_TRACKING_URI": "http://mlflow.imfuse.svc.cluster.local:5000",
        "MLFLOW_S3_ENDPOINT_URL": "http://minio.imfuse.svc.cluster.local:9000",
        "AWS_ENDPOINT_URL": "http://minio.imfuse.svc.cluster.local:9000",
        "IMFUSE_SERVING_BASE_PATH": "s3://models",
        "IMFUSE_MODEL_NAME": MODEL_NAME,
    }
    return render_tfjob(EXAMPLE_NAME, EXAMPLE_NAMESPACE, workers=2, args=args, image=image(gpu=True, registry=""),
                        gpu=True, env=env)


def example_manifest_text() -> str:
    import yaml

    header = (
        "# Rendered by components/steps/train_distributed.py (render_tfjob); do not edit, regenerate:\n"
        "#   python -m components.steps.train_distributed -o k8s/training/tfjob-example.yaml\n"
        "# The TFJob the pipeline's distributed train step creates for variant=full, workers=2\n"
        "# (chief + 2 workers, one GPU each) in namespace kubeflow. Not part of the kustomization:\n"
        "# the step creates its own per run; to try the operator by hand, put a prepared dataset\n"
        f"# in claim {SHARED_PVC} at {EXAMPLE_NAME}/data and `kubectl create -f` this file.\n"
    )
    return header + yaml.safe_dump(example_tfjob(), sort_keys=False, default_flow_style=False, width=120)


# ------------------------------------------------------------------ pure: status
def job_state(job: Mapping) -> tuple[str, str]:
    """(state, message) from the operator's conditions: Succeeded/Failed once terminal,
    else the newest true condition (Created, Running, Restarting, Suspended), else Pending."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for state in TERMINAL:
        for cond in conditions:
            if cond.get("type") == state:
                return state, cond.get("message", "")
    if conditions:
        return conditions[-1].get("type", "Unknown"), conditions[-1].get("message", "")
    return "Pending", ""


def _replicas(job: Mapping) -> str:
    statuses = (job.get("status") or {}).get("replicaStatuses") or {}
    wanted = {rt: spec.get("replicas", 1) for rt, spec in (job.get("spec") or {}).get("tfReplicaSpecs", {}).items()}
    parts = []
    for rt in sorted(set(wanted) | set(statuses), key=lambda r: (r not in REPLICA_TYPES, r)):
        counts = statuses.get(rt) or {}
        shown = ", ".join(f"{counts[k]} {k}" for k in ("active", "succeeded", "failed") if counts.get(k))
        parts.append(f"{rt.lower()} {shown or 'none started'} of {wanted.get(rt, '?')}")
    return "; ".join(parts)


def status_line(job: Mapping, pods: Sequence[Mapping] = (), width: int = 400) -> str:
    """One line: job, state, replica counts, the operator's message, and why pods wait."""
    name = (job.get("metadata") or {}).get("name", "?")
    state, message = job_state(job)
    parts = [f"TFJob {name}: {state}", _replicas(job)]
    if message and state in TERMINAL + ("Restarting",):
        parts.append(message)
    waiting = [p for p in pods if p.get("reason") and p.get("phase") not in ("Running", "Succeeded")]
    for pod in waiting[:2]:
        parts.append(f"{pod['name']} {pod.get('phase', '?')}: {pod['reason']}"
                     + (f": {pod['message']}" if pod.get("message") else ""))
    line = " | ".join(p for p in parts if p)
    line = " ".join(line.split())  # one line, whatever the messages held
    return line if len(line) <= width else line[: width - 3] + "..."


def pod_summary(pod) -> dict:
    """{name, phase, reason, message} of a kubernetes V1Pod: why it is not running, if it is not."""
    status = pod.status
    summary = {"name": pod.metadata.name, "phase": status.phase or "Unknown", "reason": "", "message": ""}
    for cs in status.container_statuses or []:
        waiting = cs.state.waiting if cs.state else None
        if waiting and waiting.reason and waiting.reason != "ContainerCreating":
            summary.update(reason=waiting.reason, message=waiting.message or "")
            return summary
    for cond in status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            summary.update(reason=cond.reason or "Unschedulable", message=cond.message or "")
    return summary


class JobGone(Exception):
    """The TFJob does not exist (HTTP 404)."""


class AlreadyExists(Exception):
    """A TFJob of that name exists already (HTTP 409)."""


def wait_for_tfjob(
    get: Callable[[str], Mapping],
    name: str,
    *,
    pods: Callable[[str], Sequence[Mapping]] | None = None,
    poll_s: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = print,
    max_errors: int = 8,
) -> tuple[str, Mapping]:
    """Poll until the job is Succeeded or Failed; echo the status line whenever it changes.

    A deleted job raises RuntimeError; up to `max_errors` API errors in a row are reported
    and retried (an API server restart must not fail a long training)."""
    last, errors = None, 0
    while True:
        try:
            job = get(name)
            errors = 0
        except JobGone:
            raise RuntimeError(f"TFJob {name} was deleted while the step waited for it") from None
        except Exception as exc:  # noqa: BLE001 - transient API errors, re-raised after max_errors
            errors += 1
            if errors > max_errors:
                raise
            echo(f"TFJob {name}: status unavailable ({type(exc).__name__}: {exc}); retrying")
            sleep(poll_s)
            continue
        state, _ = job_state(job)
        pod_list: Sequence[Mapping] = ()
        if pods is not None and state not in TERMINAL:
            with contextlib.suppress(Exception):  # pod details only decorate the line
                pod_list = pods(name)
        line = status_line(job, pod_list)
        if line != last:
            echo(line)
            last = line
        if state in TERMINAL:
            return state, job
        sleep(poll_s)


def launch(api, job: Mapping, prepare: Callable[[], None], *, echo: Callable[[str], None] = print,
           poll_s: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """Create the job (after `prepare()` put its data in place), or attach to the one a
    previous try of this step created: keep a running or finished one, replace a failed one
    (its replicas resume from the chief's checkpoints). Returns created/attached/replaced."""
    name = job["metadata"]["name"]
    try:
        existing = api.get(name)
    except JobGone:
        existing = None
    if existing is not None:
        state, _ = job_state(existing)
        if state != "Failed":
            echo(f"TFJob {name}: attaching to the job of an earlier try ({state})")
            return "attached"
        echo(f"TFJob {name}: replacing the failed job of an earlier try")
        api.delete(name)
        for _ in range(120):
            try:
                api.get(name)
            except JobGone:
                break
            sleep(poll_s)
        else:
            raise RuntimeError(f"TFJob {name} is still being deleted; retry the step later")
    prepare()
    try:
        api.create(job)
    except AlreadyExists:
        echo(f"TFJob {name}: created concurrently, attaching")
        return "attached"
    echo(f"TFJob {name}: created (chief + {job['spec']['tfReplicaSpecs']['Worker']['replicas']} workers)")
    return "replaced" if existing is not None else "created"


# ------------------------------------------------------------------ cluster (thin)
class KubeTFJobs:
    """tfjobs of one namespace through the Kubernetes Python client (a kfp dependency)."""

    def __init__(self, namespace: str | None = None):
        from kubernetes import client, config

        try:
            config.load_incluster_config()
            in_cluster = True
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as exc:
                raise RuntimeError(
                    "workers > 0 trains in a TFJob, which needs a Kubernetes cluster: this step found neither an "
                    f"in-cluster service account nor a kubeconfig ({exc}); run with workers=0 outside a cluster"
                ) from None
            in_cluster = False
        self.namespace = namespace or current_namespace(in_cluster)
        self.custom = client.CustomObjectsApi()
        self.core = client.CoreV1Api()

    @staticmethod
    def _translate(exc):
        status = getattr(exc, "status", None)
        if status == 404:
            return JobGone(str(exc))
        if status == 409:
            return AlreadyExists(str(exc))
        return exc

    def _call(self, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(TFJOB_GROUP, TFJOB_VERSION, self.namespace, TFJOB_PLURAL, *args, **kwargs)
        except ApiException as exc:
            raise self._translate(exc) from None

    def create(self, job: Mapping) -> Mapping:
        return self._call(self.custom.create_namespaced_custom_object, job)

    def get(self, name: str) -> Mapping:
        return self._call(self.custom.get_namespaced_custom_object, name)

    def delete(self, name: str) -> None:
        with contextlib.suppress(JobGone):
            self._call(self.custom.delete_namespaced_custom_object, name, propagation_policy="Background")

    def pods(self, name: str) -> list[dict]:
        found = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={name}")
        return [pod_summary(p) for p in sorted(found.items, key=lambda p: p.metadata.name)]

    def chief_log(self, name: str, lines: int = 40) -> str:
        return self.core.read_namespaced_pod_log(f"{name}-chief-0", self.namespace, container=CONTAINER,
                                                 tail_lines=lines)


def current_namespace(in_cluster: bool = True) -> str:
    """This pod's namespace (the TFJob must be in it to share the claim), else kubeconfig's."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if in_cluster and path.is_file():
        return path.read_text().strip()
    from kubernetes import config

    try:
        _, context = config.list_kube_config_contexts()
        return context.get("context", {}).get("namespace") or "default"
    except Exception:  # noqa: BLE001 - no kubeconfig context: the API default
        return "default"


# ------------------------------------------------------------------ the step
def train_distributed_stage(
    data_dir: str, out_dir: str, workers: int, variant: str, steps: int, image_size: int, batch_size: int,
    mlflow_uri: str, init_from: str = "", learning_rate: float = 0.0, teacher: str = "", distill_only: bool = False,
    *, run_id: str = "", cpu_image: str = "", gpu_image: str = "", shared_dir: str = SHARED_MOUNT,
    pvc: str = SHARED_PVC, api=None, poll_s: float = 15.0, echo: Callable[[str], None] = print,
    environ: Mapping[str, str] | None = None,
) -> dict:
    """Train in a TFJob and copy the chief's run to `out_dir`; returns the metadata the
    in-pod step returns, plus the job's name and replica count."""
    from components.image import image as default_image
    from components.steps.train import collect_run

    gpu = variant == "full"
    image = (gpu_image if gpu else cpu_image) or default_image(gpu=gpu)
    name = tfjob_name(run_id)
    api = api if api is not None else KubeTFJobs()
    data, run = job_paths(shared_dir, name)
    args = job_args(data, run, variant, steps, image_size, batch_size, mlflow_uri, init_from, learning_rate,
                    teacher, distill_only)
    job = render_tfjob(name, api.namespace, workers=int(workers), args=args, image=image, gpu=gpu, pvc=pvc,
                       mount_path=shared_dir, env=forwarded_env(environ), run_id=run_id)

    def prepare() -> None:
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(data_dir, data)
        Path(run).mkdir(parents=True, exist_ok=True)

    launch(api, job, prepare, echo=echo)
    state, final = wait_for_tfjob(api.get, name, pods=getattr(api, "pods", None), poll_s=poll_s, echo=echo)
    if state != "Succeeded":
        try:
            echo(f"--- last lines of {name}-chief-0 ---\n{api.chief_log(name)}")
        except Exception as exc:  # noqa: BLE001 - the log is a courtesy
            echo(f"(no log of {name}-chief-0: {type(exc).__name__})")
        _, message = job_state(final)
        raise RuntimeError(
            f"TFJob {name} failed: {message or 'see its events'} "
            f"(kubectl -n {api.namespace} describe tfjob {name}; logs of {name}-chief-0); "
            f"its checkpoints stay in {run} for a retry"
        )
    info = collect_run(run, out_dir, variant, steps, image_size, batch_size)
    shutil.rmtree(Path(shared_dir) / name, ignore_errors=True)
    info.update(tfjob=name, workers=int(workers))
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the example TFJob (k8s/training/tfjob-example.yaml).")
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    text = example_manifest_text()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
