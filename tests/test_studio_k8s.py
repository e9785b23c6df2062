"""The studio's cluster objects (k8s/base/studio.yaml), in every kustomize target: a
Deployment + Service that the generic checks of test_k8s_manifests also cover (non-root,
read-only root, limits, schemas), and a NetworkPolicy under which it reaches TF Serving
and MLflow only (plus DNS), both of which accept it."""

from __future__ import annotations

import re

import pytest

from test_k8s_manifests import TARGETS, find, render, requires_kubectl, selects

STUDIO = {"app.kubernetes.io/name": "imfuse-studio"}


def _pod_labels(objs, name: str) -> dict:
    return find(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]


def _egress_rules(objs, labels: dict) -> list[tuple[str, dict]]:
    rules = []
    for pol in (o for o in objs if o["kind"] == "NetworkPolicy"):
        spec = pol["spec"]
        if "Egress" in spec.get("policyTypes", []) and selects(spec["podSelector"], labels):
            rules += [(pol["metadata"]["name"], rule) for rule in spec.get("egress", [])]
    return rules


def _admits(objs, target_labels: dict, source_labels: dict, port: int) -> bool:
    """Some ingress rule of a policy selecting the target lets the source in on `port`."""
    for pol in (o for o in objs if o["kind"] == "NetworkPolicy"):
        spec = pol["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], target_labels):
            continue
        for rule in spec.get("ingress", []):
            ports_ok = not rule.get("ports") or any(p.get("port") == port for p in rule["ports"])
            peers_ok = any(("podSelector" in peer and "namespaceSelector" not in peer
                            and selects(peer["podSelector"], source_labels))
                           or peer.get("namespaceSelector") == {} for peer in rule.get("from", []))
            if ports_ok and peers_ok:
                return True
    return False


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_studio_reaches_serving_and_mlflow_only(target):
    objs = render(target)
    labels = _pod_labels(objs, "imfuse-studio")
    assert selects({"matchLabels": STUDIO}, labels)
    allowed = {"tf-serving": {8500, 8501}, "mlflow": {5000}}
    reached = {}
    for policy, rule in _egress_rules(objs, labels):
        ports = {p["port"] for p in rule.get("ports", [])}
        assert rule.get("to"), f"{policy}: egress to anywhere"
        for peer in rule["to"]:
            if policy == "allow-dns-egress":
                assert ports == {53}
                continue
            assert "namespaceSelector" not in peer and "ipBlock" not in peer, (policy, peer)
            name = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            assert name in allowed and ports <= allowed[name], (policy, name, ports)
            reached.setdefault(name, set()).update(ports)
    assert reached == allowed
    # and the other side lets it in
    assert _admits(objs, _pod_labels(objs, "tf-serving"), labels, 8500)
    assert _admits(objs, _pod_labels(objs, "mlflow"), labels, 5000)


@requires_kubectl
@pytest.mark.parametrize("target", list(TARGETS))
def test_studio_deployment_uses_the_cluster_settings(target):
    objs = render(target)
    pod = find(objs, "Deployment", "imfuse-studio")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["imfuse", "studio"]
    args = container["args"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    settings = find(objs, "ConfigMap", "imfuse-settings")["data"]
    for var in re.findall(r"\$\((\w+)\)", " ".join(args)):
        assert var in settings, f"{var} is not in imfuse-settings"
    assert args[args.index("--target") + 1] == "$(IMFUSE_SERVING_GRPC_TARGET)"
    assert {"configMapRef": {"name": "imfuse-settings"}} in container["envFrom"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["IMFUSE_CACHE"].startswith("/tmp/") and env["HOME"] == "/tmp"  # the only writable place
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    svc = find(objs, "Service", "imfuse-studio")
    assert svc["spec"]["selector"] == STUDIO and svc["spec"]["ports"][0]["port"] == port
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
