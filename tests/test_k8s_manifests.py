"""Offline checks of the kustomize manifests in k8s/ (base and every overlay).

Renders each with `kubectl kustomize`, validates every built-in object against the
Kubernetes JSON schemas (kubernetes-validate, strict, pinned version), checks the KServe
InferenceService structurally, and enforces the security policy on every container.
Also runs the TF Serving model-sync script against a fake `mc` to check what it serves.
The distributed-training manifests (k8s/training: claim and RBAC in the pipeline's
namespace) are validated the same way; the example TFJob must equal the step's render,
its pod templates validate against the Kubernetes schemas and the TFJob itself is checked
structurally (its CRD schema is not in kubernetes-validate).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
TARGETS = {
    "base": K8S / "base",
    "kind": K8S / "overlays" / "kind",
    "gpu": K8S / "overlays" / "gpu",
    "kserve": K8S / "overlays" / "kserve",
}
# Distributed training, applied separately in the namespace of the pipeline's pods.
TRAINING_TARGETS = {
    "training": K8S / "training" / "base",
    "training-kind": K8S / "training" / "kind",
}
TFJOB_EXAMPLE = K8S / "training" / "tfjob-example.yaml"
# The version of the kind node image in k8s/overlays/kind/kind-cluster.yaml.
K8S_VERSION = "1.33"
SECRET_EXAMPLES = {
    "imfuse-postgres": K8S / "base" / "secrets" / "postgres.example.env",
    "imfuse-s3": K8S / "base" / "secrets" / "s3.example.env",
}
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

requires_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) is not installed"
)


@functools.lru_cache(maxsize=None)
def _render_text(target: str) -> str:
    proc = subprocess.run(
        ["kubectl", "kustomize", str({**TARGETS, **TRAINING_TARGETS}[target])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"kustomize failed for {target}: {proc.stderr}"
    return proc.stdout


def render(target: str) -> list[dict]:
    """Rendered objects of one kustomization (fresh copies: tests may not share state)."""
    return [doc for doc in yaml.safe_load_all(_render_text(target)) if doc]


def find(objs: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(objs: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    """(owner name, pod template metadata, pod spec) for every workload that makes pods."""
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in POD_OWNERS:
            tpl = obj["spec"]["template"]
            yield name, tpl.get("metadata", {}), tpl["spec"]
        elif obj["kind"] == "CronJob":
            tpl = obj["spec"]["jobTemplate"]["spec"]["template"]
            yield name, tpl.get("metadata", {}), tpl["spec"]
        elif obj["kind"] == "Pod":
            yield name, obj["metadata"], obj["spec"]


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def is_builtin(obj: dict) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_renders_the_whole_system(target):
    objs = render(target)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for expected in [
        ("Namespace", "imfuse"),
        ("Deployment", "mlflow"),
        ("StatefulSet", "postgres"),
        ("StatefulSet", "minio"),
        ("Job", "minio-buckets"),
        ("Deployment", "tf-serving"),
        ("Service", "tf-serving"),
        ("HorizontalPodAutoscaler", "tf-serving"),
        ("PodDisruptionBudget", "tf-serving"),
        ("NetworkPolicy", "default-deny-all"),
        ("ConfigMap", "imfuse-settings"),
        ("ServiceAccount", "imfuse-pipeline-runner"),
    ]:
        assert expected in kinds, f"{target} lacks {expected}"
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "imfuse", obj["metadata"]["name"]


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_builtin_objects_validate_against_kubernetes_schemas(target):
    import kubernetes_validate

    for obj in render(target):
        if not is_builtin(obj):
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")


def test_schema_validation_rejects_a_misplaced_field():
    """The validator really is strict: a pod-level field inside a container fails."""
    import kubernetes_validate

    deployment = next(
        d for d in yaml.safe_load_all((K8S / "base" / "tf-serving.yaml").read_text())
        if d["kind"] == "Deployment"
    )
    deployment["metadata"]["namespace"] = "imfuse"
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["fsGroup"] = 1000
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@requires_kubectl
def test_only_the_kserve_overlay_carries_the_crd_object():
    for target in ("base", "kind", "gpu"):
        assert all(is_builtin(o) for o in render(target)), target
    custom = [o for o in render("kserve") if not is_builtin(o)]
    assert [(o["kind"]) for o in custom] == ["InferenceService"]


@requires_kubectl
def test_inference_service_is_structurally_sound():
    isvc = find(render("kserve"), "InferenceService", "imfuse")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["namespace"] == "imfuse"
    predictor = isvc["spec"]["predictor"]
    tf = predictor["tensorflow"]
    assert tf["storageUri"] == "s3://models/imfuse"
    assert tf["runtimeVersion"].startswith("2.")
    assert set(tf["resources"]["requests"]) >= {"cpu", "memory"}
    assert set(tf["resources"]["limits"]) >= {"cpu", "memory"}
    assert tf["securityContext"]["readOnlyRootFilesystem"] is True
    assert predictor["minReplicas"] <= predictor["maxReplicas"]
    sa = find(render("kserve"), "ServiceAccount", predictor["serviceAccountName"])
    assert {"name": "imfuse-s3"} in sa["secrets"]
    # The storage URI is where the export publishes: IMFUSE_SERVING_BASE_PATH/<model>.
    settings = find(render("kserve"), "ConfigMap", "imfuse-settings")["data"]
    assert tf["storageUri"] == f"{settings['IMFUSE_SERVING_BASE_PATH']}/{settings['IMFUSE_MODEL_NAME']}"
    # Metrics as the TF Serving Deployment has them: the monitoring ConfigMap the predictor
    # mounts is in the render, and its pods carry the scrape annotations.
    rendered = render("kserve")
    volumes = {v["name"]: v for v in predictor["volumes"]}
    (mount,) = [m for m in tf["volumeMounts"] if m["name"] in volumes]
    config_map = find(rendered, "ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    config_file = next(a.split("=", 1)[1] for a in tf["args"] if a.startswith("--monitoring_config_file="))
    assert config_file == f"{mount['mountPath']}/monitoring.config" and "prometheus_config" in config_map["data"]["monitoring.config"]
    annotations = isvc["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/monitoring/prometheus/metrics"


def _check_container(owner: str, pod: dict, c: dict) -> list[str]:
    problems = []
    where = f"{owner} container {c['name']}"
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
        problems.append(f"{where}: runAsNonRoot is not true")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if not isinstance(uid, int) or uid == 0:
        problems.append(f"{where}: runAsUser must be a non-zero uid, got {uid!r}")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        problems.append(f"{where}: capabilities do not drop ALL")
    if csc.get("capabilities", {}).get("add"):
        problems.append(f"{where}: adds capabilities")
    seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
    if seccomp.get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccompProfile is not RuntimeDefault")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(res.get(part, {})):
            problems.append(f"{where}: resources.{part} lacks cpu or memory")
    image = c["image"]
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    if not tag or tag == "latest":
        problems.append(f"{where}: image {image} is not pinned to a tag")
    # A read-only root needs a writable /tmp; it must be a volume, not the image.
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if "/tmp" not in mounts or "emptyDir" not in volumes.get(mounts["/tmp"], {}):
        problems.append(f"{where}: /tmp is not an emptyDir mount")
    return problems


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_every_container_is_non_root_read_only_and_bounded(target):
    objs = render(target)
    problems, seen = [], 0
    for owner, _, pod in pod_specs(objs):
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"{owner}: uses host namespaces")
        for c in containers(pod):
            seen += 1
            if c.get("securityContext", {}).get("privileged"):
                problems.append(f"{owner} container {c['name']}: privileged")
            problems += _check_container(owner, pod, c)
    assert seen >= 7
    assert not problems, "\n".join(problems)


def test_security_check_catches_a_writable_root_filesystem():
    pod = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    good = {
        "name": "c",
        "image": "busybox:1.37",
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    assert _check_container("Pod/x", pod, good) == []
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["securityContext"]["readOnlyRootFilesystem"] = False
    bad["image"] = "busybox"
    del bad["resources"]["limits"]
    problems = _check_container("Pod/x", pod, bad)
    assert len(problems) == 3, problems


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_no_credentials_in_rendered_output(target):
    objs = render(target)
    assert not [o for o in objs if o["kind"] == "Secret"], "Secrets must be created by the user, not rendered"
    text = _render_text(target)
    for example in SECRET_EXAMPLES.values():
        for line in example.read_text().splitlines():
            key, _, value = line.partition("=")
            if line.startswith("#") or not ("PASSWORD" in key or "SECRET" in key):
                continue
            assert value and value not in text, f"{key} from {example.name} appears in the output"
    for owner, _, pod in pod_specs(objs):
        for c in containers(pod):
            for env in c.get("env", []):
                sensitive = any(w in env["name"] for w in ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY"))
                if sensitive:
                    assert "valueFrom" in env, f"{owner}/{c['name']}: {env['name']} is a literal"


@requires_kubectl
def test_referenced_secret_keys_are_documented_in_the_examples():
    """Every secretKeyRef names a key that the matching *.example.env tells users to set."""
    refs = set()
    for target in TARGETS:
        for _, _, pod in pod_specs(render(target)):
            for c in containers(pod):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.add((ref["name"], ref["key"]))
    assert refs
    for name, key in refs:
        assert name in SECRET_EXAMPLES, f"Secret {name} has no example env file"
        keys = {
            line.split("=", 1)[0]
            for line in SECRET_EXAMPLES[name].read_text().splitlines()
            if line and not line.startswith("#")
        }
        assert key in keys, f"{name}: key {key} missing from {SECRET_EXAMPLES[name].name}"


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_configmaps_and_services_resolve(target):
    objs = render(target)
    configmaps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    for owner, _, pod in pod_specs(objs):
        for vol in pod.get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in configmaps, f"{owner}: {vol['configMap']['name']}"
        for c in containers(pod):
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in configmaps
    templates = list(pod_specs(objs))
    for svc in (o for o in objs if o["kind"] == "Service"):
        backends = [(meta, pod) for _, meta, pod in templates if selects({"matchLabels": svc["spec"]["selector"]}, meta.get("labels", {}))]
        assert backends, f"Service {svc['metadata']['name']} selects no pods"
        named = {p["name"] for _, pod in backends for c in pod["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in named, f"Service {svc['metadata']['name']}: {port['targetPort']}"


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_serving_service_exposes_grpc_8500_and_rest_8501(target):
    svc = find(render(target), "Service", "tf-serving")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["port"] == 8500 and ports["grpc"].get("appProtocol") == "grpc"
    assert ports["http"]["port"] == 8501
    dep = find(render(target), "Deployment", "tf-serving")
    server = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "tf-serving")
    assert {p["name"]: p["containerPort"] for p in server["ports"]} == {"grpc": 8500, "http": 8501}
    assert server["readinessProbe"]["httpGet"]["path"].startswith("/v1/models/imfuse")
    assert server["livenessProbe"]["httpGet"]["path"] == "/v1/models/imfuse"
    assert server["readinessProbe"]["httpGet"]["port"] == "http"


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_autoscaler_and_disruption_budget_cover_serving(target):
    objs = render(target)
    dep = find(objs, "Deployment", "tf-serving")
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    hpa = find(objs, "HorizontalPodAutoscaler", "tf-serving")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tf-serving"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = find(objs, "PodDisruptionBudget", "tf-serving")
    assert selects(pdb["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    # A PDB that can never be satisfied blocks every node drain.
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1


def _ingress_allows(policies: list[dict], labels: dict, port: int) -> bool:
    for pol in policies:
        if "Ingress" not in pol["spec"].get("policyTypes", []) or not selects(pol["spec"]["podSelector"], labels):
            continue
        for rule in pol["spec"].get("ingress", []):
            if not rule.get("ports") or any(p.get("port") == port for p in rule["ports"]):
                return True
    return False


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_network_policies_deny_by_default_and_open_each_service_port(target):
    objs = render(target)
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    deny = find(objs, "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    templates = list(pod_specs(objs))
    for pol in policies:
        sel = pol["spec"]["podSelector"]
        if sel and pol["metadata"]["name"] != "kserve-imfuse":
            assert any(selects(sel, m.get("labels", {})) for _, m, _ in templates), pol["metadata"]["name"]
    for svc in (o for o in objs if o["kind"] == "Service"):
        for _, meta, pod in templates:
            labels = meta.get("labels", {})
            if not selects({"matchLabels": svc["spec"]["selector"]}, labels):
                continue
            by_name = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
            for port in svc["spec"]["ports"]:
                number = by_name[port["targetPort"]]
                if port["name"] == "console":  # MinIO console: port-forward only
                    continue
                assert _ingress_allows(policies, labels, number), f"{svc['metadata']['name']}:{number} is unreachable"
    # The serving pod may reach MinIO (model sync) and MinIO accepts it.
    serving = find(objs, "NetworkPolicy", "tf-serving")["spec"]
    assert any(p["port"] == 9000 for rule in serving["egress"] for p in rule["ports"])


@requires_kubectl
def test_kind_overlay_matches_the_kind_cluster_config():
    cluster = yaml.safe_load((K8S / "overlays" / "kind" / "kind-cluster.yaml").read_text())
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cluster["kind"] == "Cluster"
    node = cluster["nodes"][0]
    assert node["image"].startswith(f"kindest/node:v{K8S_VERSION}.")
    mappings = {m["containerPort"]: m["hostPort"] for m in node["extraPortMappings"]}
    objs = render("kind")
    node_ports = {}
    for svc in (o for o in objs if o["kind"] == "Service"):
        for p in svc["spec"]["ports"]:
            if "nodePort" in p:
                assert svc["spec"]["type"] == "NodePort"
                node_ports[p["nodePort"]] = p["port"]
    assert node_ports == mappings, "each NodePort is mapped to the host on the service's own port"
    assert set(mappings.values()) == {8500, 8501, 5000, 9000}
    assert any(m["containerPath"] == "/var/local-path-provisioner" for m in node["extraMounts"])
    for kind_name in ("postgres", "minio"):
        sts = find(objs, "StatefulSet", kind_name)
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "standard"
    base_req = find(render("base"), "Deployment", "tf-serving")["spec"]["template"]["spec"]["containers"][0]
    kind_req = find(objs, "Deployment", "tf-serving")["spec"]["template"]["spec"]["containers"][0]
    assert kind_req["resources"]["requests"]["memory"] != base_req["resources"]["requests"]["memory"]


@requires_kubectl
def test_gpu_overlay_puts_serving_on_a_gpu():
    objs = render("gpu")
    spec = find(objs, "Deployment", "tf-serving")["spec"]["template"]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "tf-serving")
    assert server["image"].startswith("tensorflow/serving:") and server["image"].endswith("-gpu")
    base_image = find(render("base"), "Deployment", "tf-serving")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert server["image"] == base_image + "-gpu"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    check = find(objs, "CronJob", "imfuse-gpu-check")
    assert check["spec"]["suspend"] is True
    job_pod = check["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["image"] == "imfuse:0.1.0-gpu"
    assert job_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    training = find(objs, "ConfigMap", "imfuse-gpu-training")["data"]
    assert training["IMFUSE_TRAIN_IMAGE"] == job_pod["containers"][0]["image"]
    config = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tf-serving-config"))
    assert config["data"]["batching.config"] == (K8S / "overlays" / "gpu" / "batching.config").read_text()
    assert "models.config" in config["data"]


# --- distributed training: k8s/training and the TFJob the pipeline step renders ---

TFJOB_REPLICA_TYPES = {"Chief", "Master", "PS", "Worker", "Evaluator"}  # kubeflow.org/v1 TFReplicaType
TFJOB_SPEC_FIELDS = {"runPolicy", "tfReplicaSpecs", "successPolicy", "enableDynamicWorker"}
TFJOB_RUN_POLICY_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "cleanPodPolicy", "schedulingPolicy", "suspend",
                           "ttlSecondsAfterFinished"}
TFJOB_RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}


def tfjob_problems(job: dict) -> list[str]:
    """What the Training Operator's TFJob CRD (kubeflow.org/v1) and its validation would reject:
    required fields, known replica types and policies, the `tensorflow` container in every
    replica, bounded resources (extended resources with requests equal to limits)."""
    problems = []
    if job.get("apiVersion") != "kubeflow.org/v1" or job.get("kind") != "TFJob":
        problems.append(f"not a kubeflow.org/v1 TFJob: {job.get('apiVersion')} {job.get('kind')}")
    meta = job.get("metadata", {})
    if not meta.get("name") or not meta.get("namespace"):
        problems.append("metadata needs name and namespace")
    spec = job.get("spec", {})
    if set(spec) - TFJOB_SPEC_FIELDS:
        problems.append(f"unknown spec fields {sorted(set(spec) - TFJOB_SPEC_FIELDS)}")
    policy = spec.get("runPolicy", {})
    if set(policy) - TFJOB_RUN_POLICY_FIELDS:
        problems.append(f"unknown runPolicy fields {sorted(set(policy) - TFJOB_RUN_POLICY_FIELDS)}")
    if policy.get("cleanPodPolicy", "None") not in ("None", "All", "Running"):
        problems.append(f"cleanPodPolicy {policy['cleanPodPolicy']!r}")
    replicas = spec.get("tfReplicaSpecs") or {}
    if not replicas:
        problems.append("spec.tfReplicaSpecs is required")
    if set(replicas) - TFJOB_REPLICA_TYPES:
        problems.append(f"unknown replica types {sorted(set(replicas) - TFJOB_REPLICA_TYPES)}")
    if replicas.get("Chief", {}).get("replicas", 1) != 1:
        problems.append("a TFJob has at most one Chief")
    for rtype, rspec in replicas.items():
        where = f"tfReplicaSpecs.{rtype}"
        if set(rspec) - {"replicas", "restartPolicy", "template"}:
            problems.append(f"{where}: unknown fields {sorted(set(rspec) - {'replicas', 'restartPolicy', 'template'})}")
        count = rspec.get("replicas", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            problems.append(f"{where}: replicas {count!r}")
        if rspec.get("restartPolicy", "Never") not in TFJOB_RESTART_POLICIES:
            problems.append(f"{where}: restartPolicy {rspec.get('restartPolicy')!r}")
        pod = rspec.get("template", {}).get("spec", {})
        named = [c for c in pod.get("containers", []) if c.get("name") == "tensorflow"]
        if len(named) != 1:
            problems.append(f"{where}: needs exactly one container named tensorflow")
            continue
        container = named[0]
        if not container.get("image"):
            problems.append(f"{where}: the tensorflow container has no image")
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
        if "tfjob-port" not in ports:
            problems.append(f"{where}: no tfjob-port (the port TF_CONFIG names)")
        res = container.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part, {})):
                problems.append(f"{where}: resources.{part} lacks cpu or memory")
        for name, value in res.get("limits", {}).items():
            if "/" in name and res.get("requests", {}).get(name, value) != value:
                problems.append(f"{where}: {name} requests differ from limits")
    return problems


def _example_tfjob() -> dict:
    return yaml.safe_load(TFJOB_EXAMPLE.read_text())


def _tfjob_renders() -> dict[str, dict]:
    """The committed example (full variant, GPUs) and a CPU render (reduced variant)."""
    from components.steps import train_distributed as td

    data, run = td.job_paths("/shared", "imfuse-train-cpu")
    cpu = td.render_tfjob("imfuse-train-cpu", "kubeflow", workers=1, image="imfuse:0.1.0", gpu=False,
                          args=td.job_args(data, run, "reduced", 100, 64, 2, "http://mlflow:5000"),
                          env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    return {"example": _example_tfjob(), "cpu": cpu}


def test_tfjob_example_is_the_render_of_the_step():
    from components.steps.train_distributed import example_manifest_text

    assert TFJOB_EXAMPLE.read_text() == example_manifest_text(), (
        "k8s/training/tfjob-example.yaml is stale: python -m components.steps.train_distributed "
        "-o k8s/training/tfjob-example.yaml")


@pytest.mark.parametrize("which", ["example", "cpu"])
def test_tfjob_is_structurally_sound(which):
    job = _tfjob_renders()[which]
    assert tfjob_problems(job) == []
    specs = job["spec"]["tfReplicaSpecs"]
    assert set(specs) == {"Chief", "Worker"} and specs["Worker"]["replicas"] >= 1
    assert {s["restartPolicy"] for s in specs.values()} == {"OnFailure"}
    for spec in specs.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"] == ["imfuse"] and container["args"][0] == "train"
        assert container["args"][-2:] == ["--strategy", "multiworker"]
        # --data and --out live on the shared claim: workers restore from the chief's checkpoints
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claims = {v["name"] for v in spec["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
        for flag in ("--data", "--out"):
            path = container["args"][container["args"].index(flag) + 1]
            assert any(path.startswith(mounts[c] + "/") for c in claims), f"{flag} {path} is not on the claim"
        # TF_CONFIG is the operator's to set
        assert "TF_CONFIG" not in {e["name"] for e in container.get("env", [])}


def test_tfjob_check_catches_what_the_operator_rejects():
    job = _example_tfjob()
    assert tfjob_problems(job) == []
    bad = yaml.safe_load(yaml.safe_dump(job))
    bad["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["name"] = "trainer"
    bad["spec"]["tfReplicaSpecs"]["Worker"]["restartPolicy"] = "Sometimes"
    bad["spec"]["tfReplicaSpecs"]["Launcher"] = bad["spec"]["tfReplicaSpecs"]["Worker"]
    del bad["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    bad["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] = 2
    assert len(tfjob_problems(bad)) == 8, tfjob_problems(bad)  # Worker and Launcher share one spec
    del bad["spec"]["tfReplicaSpecs"]
    assert "spec.tfReplicaSpecs is required" in tfjob_problems(bad)


@pytest.mark.parametrize("which", ["example", "cpu"])
def test_tfjob_pod_templates_validate_against_kubernetes_schemas(which):
    """Each replica's template, as a PodTemplate: the part of a TFJob that is Kubernetes' own."""
    import kubernetes_validate

    job = _tfjob_renders()[which]
    for rtype, spec in job["spec"]["tfReplicaSpecs"].items():
        template = {"apiVersion": "v1", "kind": "PodTemplate",
                    "metadata": {"name": f"{job['metadata']['name']}-{rtype.lower()}",
                                 "namespace": job["metadata"]["namespace"]},
                    "template": spec["template"]}
        try:
            kubernetes_validate.validate(template, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{which} {rtype}: {err.message} at {list(err.path)}")


@pytest.mark.parametrize("which", ["example", "cpu"])
def test_tfjob_replicas_are_non_root_read_only_and_bounded(which):
    job = _tfjob_renders()[which]
    problems = []
    for rtype, spec in job["spec"]["tfReplicaSpecs"].items():
        pod = spec["template"]["spec"]
        for c in containers(pod):
            problems += _check_container(f"TFJob/{job['metadata']['name']} {rtype}", pod, c)
        assert pod.get("automountServiceAccountToken") is False
    assert not problems, "\n".join(problems)


def test_tfjob_example_asks_for_one_gpu_per_replica_on_gpu_nodes():
    job = _example_tfjob()
    for spec in job["spec"]["tfReplicaSpecs"].values():
        pod = spec["template"]["spec"]
        res = pod["containers"][0]["resources"]
        assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert pod["containers"][0]["image"] == "imfuse:0.1.0-gpu"
    assert job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2


@requires_kubectl
@pytest.mark.parametrize("target", list(TRAINING_TARGETS))
def test_training_manifests_validate_and_grant_what_the_step_calls(target):
    import kubernetes_validate

    from components.cluster import SHARED_PVC
    from components.steps.train_distributed import RBAC_NEEDS

    objs = render(target)
    assert sorted(o["kind"] for o in objs) == ["PersistentVolumeClaim", "Role", "RoleBinding"]
    for obj in objs:
        assert obj["metadata"]["namespace"] == "kubeflow", obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "imfuse"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{target}: {obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")
    role = next(o for o in objs if o["kind"] == "Role")
    for group, resource, verb in RBAC_NEEDS:
        assert any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in role["rules"]), f"the Role does not grant {verb} {resource}.{group}"
    binding = find(objs, "RoleBinding", role["metadata"]["name"])
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}]
    claim = find(objs, "PersistentVolumeClaim", SHARED_PVC)["spec"]
    if target == "training":
        assert claim["accessModes"] == ["ReadWriteMany"] and "storageClassName" not in claim
    else:  # one kind node: ReadWriteOnce on local-path is mountable by every pod
        assert claim["accessModes"] == ["ReadWriteOnce"] and claim["storageClassName"] == "standard"
    # the example job and the pipeline's launcher task mount this claim
    volumes = _example_tfjob()["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["volumes"]
    assert {"name": "shared", "persistentVolumeClaim": {"claimName": SHARED_PVC}} in volumes
    compiled = list(yaml.safe_load_all((REPO / "pipelines" / "imfuse_pipeline.yaml").read_text()))[1]
    mounts = [m for e in compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
              for m in e.get("pvcMount", [])]
    assert [m["constant"] for m in mounts] == [SHARED_PVC]


@requires_kubectl
def test_training_manifests_stay_out_of_the_imfuse_overlays():
    """The claim must be in the namespace of the pipeline pods, not in `imfuse`."""
    for target in TARGETS:
        assert not [o for o in render(target) if o["kind"] == "PersistentVolumeClaim"
                    and o["metadata"]["name"] == "imfuse-training"], target


# --- the model-sync script run by the serving pod's init container and sidecar ---

FAKE_MC = """#!/bin/sh
# Test double for `mc mirror --quiet --overwrite --remove store/BUCKET/PATH DEST`.
[ "$1" = mirror ] || exit 2
for arg; do src="${dst:-}"; dst="$arg"; done
local_src="$FAKE_S3_ROOT/${src#store/}"
[ -d "$local_src" ] || exit 1
rm -rf "$dst" && mkdir -p "$dst" && cp -R "$local_src/." "$dst/"
"""


def _publish(bucket_root: Path, version: int, complete: bool = True) -> None:
    vdir = bucket_root / "models" / "imfuse" / str(version)
    (vdir / "variables").mkdir(parents=True)
    (vdir / "variables" / "variables.data-00000-of-00001").write_bytes(b"w" * 64)
    if complete:
        (vdir / "variables" / "variables.index").write_bytes(b"i")
        (vdir / "saved_model.pb").write_bytes(b"pb")


@pytest.fixture()
def sync_env(tmp_path):
    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mc").write_text(FAKE_MC)
    (bindir / "mc").chmod(0o755)
    s3 = tmp_path / "s3"
    (s3 / "models" / "imfuse").mkdir(parents=True)
    env = dict(
        os.environ,
        PATH=f"{bindir}:{os.environ['PATH']}",
        FAKE_S3_ROOT=str(s3),
        MODELS_ROOT=str(tmp_path / "models"),
        MODEL_NAME="imfuse",
        MODELS_BUCKET="models",
        SYNC_INTERVAL_SECONDS="0.2",
    )
    return env, s3, tmp_path / "models"


SYNC_SCRIPT = K8S / "base" / "serving" / "sync-models.sh"


def test_sync_once_waits_for_a_complete_version_then_serves_it(sync_env):
    env, s3, models = sync_env
    _publish(s3, 2, complete=False)  # still uploading: must not be served
    proc = subprocess.Popen(["sh", str(SYNC_SCRIPT), "--once"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert proc.poll() is None, "init container must keep waiting while no version is complete"
        assert not (models / "imfuse" / "2").exists()
        _publish(s3, 1)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert (models / "imfuse" / "1" / "saved_model.pb").read_bytes() == b"pb"
    assert (models / "imfuse" / "1" / "variables" / "variables.index").exists()
    assert not (models / "imfuse" / "2").exists()


def test_sync_loop_adds_new_versions_and_drops_deleted_ones(sync_env):
    env, s3, models = sync_env
    _publish(s3, 1)
    proc = subprocess.Popen(["sh", str(SYNC_SCRIPT)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        while not (models / "imfuse" / "1").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (models / "imfuse" / "1" / "saved_model.pb").exists()
        _publish(s3, 3)
        shutil.rmtree(s3 / "models" / "imfuse" / "1")
        deadline = time.time() + 10
        while ((models / "imfuse" / "1").exists() or not (models / "imfuse" / "3").exists()) and time.time() < deadline:
            time.sleep(0.1)
        assert sorted(p.name for p in (models / "imfuse").iterdir()) == ["3"]
        assert not list((models / ".staging").iterdir()), "staging dir is left clean"
    finally:
        proc.kill()
        proc.wait()
