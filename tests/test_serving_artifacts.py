"""The TF Serving artefacts (serving/) and the project Dockerfiles (components/).

models.config and batching.config must parse as TF Serving's own protos, agree with the
serving Dockerfile and the Kubernetes Deployment, and the project images must pin the
versions in pyproject.toml and never pip-install when a container starts.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format

from imfuse.serving.config import batching_parameters_class, monitoring_config_class  # TF Serving's protos

REPO = Path(__file__).resolve().parents[1]
SERVING = REPO / "serving"
K8S_SERVING_CONFIG = REPO / "k8s" / "base" / "serving"
GPU_BATCHING = REPO / "k8s" / "overlays" / "gpu" / "batching.config"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def model_server_config(path: Path):
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    logical, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, f"{path}: dangling line continuation"
    out = []
    for entry in logical:
        instr, _, args = entry.partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def exec_form(args: str) -> list[str]:
    return yaml.safe_load(args)  # a JSON array is valid YAML


# Flags only the Deployment passes: the monitoring config is a Kubernetes ConfigMap.
K8S_ONLY_FLAGS = {"--monitoring_config_file"}


def serving_deployment() -> dict:
    docs = yaml.safe_load_all((REPO / "k8s" / "base" / "tf-serving.yaml").read_text())
    return next(d for d in docs if d["kind"] == "Deployment")


def server_container(deployment: dict) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "tf-serving")


def flags(args: list[str]) -> dict[str, str]:
    parsed = {}
    for arg in args:
        key, _, value = arg.partition("=")
        parsed[key] = value
    return parsed


# --- models.config ---------------------------------------------------------------

def test_models_config_parses_as_model_server_config():
    config = model_server_config(SERVING / "models.config")
    models = config.model_config_list.config
    assert [m.name for m in models] == ["imfuse"]
    model = models[0]
    assert model.base_path == "/models/imfuse"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "specific"


def test_version_labels_point_at_versions_the_policy_loads():
    """TF Serving only assigns a label to a loaded version; the policy must load it."""
    model = model_server_config(SERVING / "models.config").model_config_list.config[0]
    loaded = set(model.model_version_policy.specific.versions)
    assert loaded and all(v > 0 for v in loaded)
    assert set(model.version_labels) == {"stable", "canary"}
    for label, version in model.version_labels.items():
        assert version in loaded, f"label {label} -> {version}, not in {sorted(loaded)}"


def test_models_config_with_a_typo_is_rejected():
    from tensorflow_serving.config import model_server_config_pb2

    broken = (SERVING / "models.config").read_text().replace("base_path", "basepath")
    with pytest.raises(text_format.ParseError):
        text_format.Parse(broken, model_server_config_pb2.ModelServerConfig())


# --- batching.config -------------------------------------------------------------

@pytest.mark.parametrize("path", [SERVING / "batching.config", GPU_BATCHING], ids=["cpu", "gpu"])
def test_batching_config_parses_with_sane_values(path):
    params = text_format.Parse(path.read_text(), batching_parameters_class()())
    assert params.HasField("max_batch_size") and params.max_batch_size.value >= 2
    assert 0 < params.batch_timeout_micros.value <= 100_000
    assert params.num_batch_threads.value >= 1
    assert params.max_enqueued_batches.value >= 1
    if params.allowed_batch_sizes:
        assert list(params.allowed_batch_sizes) == sorted(params.allowed_batch_sizes)
        assert params.allowed_batch_sizes[-1] == params.max_batch_size.value


def test_batching_parser_rejects_unknown_fields():
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size { value: 8 }\nmax_batch: 3\n", batching_parameters_class()())


def test_kubernetes_copies_of_the_configs_are_identical():
    for name in ("models.config", "batching.config"):
        assert (K8S_SERVING_CONFIG / name).read_text() == (SERVING / name).read_text(), (
            f"k8s/base/serving/{name} differs from serving/{name}: copy it over"
        )


# --- serving/Dockerfile vs. the Deployment ------------------------------------------

def test_serving_dockerfile_uses_the_official_pinned_image_and_the_deployment_flags():
    steps = parse_dockerfile(SERVING / "Dockerfile")
    args = {k: v for k, v in (s[1].split("=", 1) for s in steps if s[0] == "ARG" and "=" in s[1])}
    base = next(v for k, v in steps if k == "FROM")
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    image, _, tag = base.partition(":")
    assert image == "tensorflow/serving"
    assert re.fullmatch(r"2\.\d+\.\d+", tag), f"pin an exact 2.x release, not {tag!r}"
    container = server_container(serving_deployment())
    assert container["image"] == f"tensorflow/serving:{tag}", "Deployment and Dockerfile must run the same release"

    entry = exec_form(next(v for k, v in steps if k == "ENTRYPOINT"))
    cmd = exec_form(next(v for k, v in steps if k == "CMD"))
    assert container["command"] == entry
    shared = [a for a in container["args"] if a.partition("=")[0] not in K8S_ONLY_FLAGS]
    assert shared == cmd, "Deployment args and Dockerfile CMD drifted apart"
    f = flags(cmd)
    assert f["--port"] == "8500" and f["--rest_api_port"] == "8501"
    assert f["--enable_batching"] == "true"
    assert int(f["--file_system_poll_wait_seconds"]) > 0
    assert f["--allow_version_labels_for_unavailable_models"] == "true"

    copies = [shlex.split(v) for k, v in steps if k == "COPY"]
    copied = {f"{dest.rstrip('/')}/{Path(src).name}" for *srcs, dest in copies for src in srcs}
    assert f["--model_config_file"] in copied and f["--batching_parameters_file"] in copied
    user = next(v for k, v in steps if k == "USER")
    assert not user.startswith("0") and user.split(":")[0] != "root"


def test_deployment_mounts_the_configs_and_models_where_the_flags_and_base_path_expect():
    deployment = serving_deployment()
    container = server_container(deployment)
    f = flags(container["args"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config_dir = str(Path(f["--model_config_file"]).parent)
    assert str(Path(f["--batching_parameters_file"]).parent) == config_dir
    assert volumes[mounts[config_dir]]["configMap"]["name"] == "tf-serving-config"

    model = model_server_config(SERVING / "models.config").model_config_list.config[0]
    models_root = str(Path(model.base_path).parent)
    assert "emptyDir" in volumes[mounts[models_root]]
    sync_env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["initContainers"][0]["env"]}
    assert f"/models/{sync_env['MODEL_NAME']}" == model.base_path
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{model.name}/labels/stable/metadata"
    assert "stable" in model.version_labels
    assert container["livenessProbe"]["httpGet"]["path"] == f"/v1/models/{model.name}"


def test_deployment_serves_prometheus_metrics_where_the_scrape_annotations_point():
    from imfuse.serving.config import parse_monitoring_text

    docs = list(yaml.safe_load_all((REPO / "k8s" / "base" / "tf-serving.yaml").read_text()))
    deployment = serving_deployment()
    container = server_container(deployment)
    config_file = Path(flags(container["args"])["--monitoring_config_file"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config_map_name = volumes[mounts[str(config_file.parent)]]["configMap"]["name"]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map_name)
    text = config_map["data"][config_file.name]

    proto = text_format.Parse(text, monitoring_config_class()())  # TF Serving's MonitoringConfig fields
    assert proto.prometheus_config.enable
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == proto.prometheus_config.path == "/monitoring/prometheus/metrics"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert annotations["prometheus.io/port"] == str(ports["http"])  # TF Serving serves it on the REST port
    assert parse_monitoring_text(text) == annotations["prometheus.io/path"]  # imfuse serve reads it too


KSERVE_ISVC = REPO / "k8s" / "components" / "kserve" / "inferenceservice.yaml"
# REST port of KServe's TF Serving runtime (kserve/config/runtimes/kserve-tensorflow-serving.yaml:
# --rest_api_port=8080), where TF Serving also serves the Prometheus metrics.
KSERVE_TF_REST_PORT = 8080


def test_kserve_predictor_serves_the_same_metrics_where_its_annotations_point():
    docs = list(yaml.safe_load_all(KSERVE_ISVC.read_text()))
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    predictor = isvc["spec"]["predictor"]
    container = predictor["tensorflow"]
    args = flags(container["args"])
    assert "--rest_api_port" not in args  # the runtime's port stays, so the annotations hold
    config_file = Path(args["--monitoring_config_file"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in predictor["volumes"]}
    config_map_name = volumes[mounts[str(config_file.parent)]]["configMap"]["name"]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map_name)
    text = config_map["data"][config_file.name]

    base = list(yaml.safe_load_all((REPO / "k8s" / "base" / "tf-serving.yaml").read_text()))
    base_map = next(d for d in base if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tf-serving-monitoring")
    assert text == base_map["data"]["monitoring.config"]  # one monitoring set-up for both servers
    proto = text_format.Parse(text, monitoring_config_class()())
    assert proto.prometheus_config.enable
    annotations = isvc["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == annotations["prometheus.kserve.io/path"] == proto.prometheus_config.path
    assert annotations["prometheus.io/port"] == annotations["prometheus.kserve.io/port"] == str(KSERVE_TF_REST_PORT)
    # KServe's own switch would repoint prometheus.io/port at a queue proxy RawDeployment lacks.
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "false"


# --- components/Dockerfile{,.gpu} vs. pyproject.toml -------------------------------------

def pyproject_pins() -> dict[str, str]:
    pins = {}
    for dep in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^,;\s]+)", dep.strip())
        if m:
            pins[m.group(1).lower()] = m.group(3)
    return pins


def dockerfile_pins(text: str) -> dict[str, str]:
    return {
        name.lower(): version
        for name, version in re.findall(r"\b([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([0-9][^\"'\s\\]*)", text)
    }


@pytest.mark.parametrize("name,gpu", [("Dockerfile", False), ("Dockerfile.gpu", True)])
def test_project_images_pin_the_pyproject_versions(name, gpu):
    path = REPO / "components" / name
    text = path.read_text()
    steps = parse_dockerfile(path)
    pins, found = pyproject_pins(), dockerfile_pins(text)
    assert len(pins) >= 5
    for package, version in pins.items():
        assert found.get(package) == version, f"{name}: {package} should be =={version}, is {found.get(package)}"
    assert set(found) <= set(pins), f"{name} pins packages pyproject does not: {set(found) - set(pins)}"
    assert ('"tensorflow[and-cuda]==' in text) == gpu
    assert "tensorflow-transform" not in text

    base = next(v for k, v in steps if k == "FROM")
    py = re.fullmatch(r">=(\d+\.\d+),<.*", PYPROJECT["project"]["requires-python"]).group(1)
    assert base.startswith(f"python:{py}-slim"), base
    version_arg = next(v for k, v in steps if k == "ARG" and v.startswith("IMFUSE_VERSION="))
    assert version_arg == f"IMFUSE_VERSION={PYPROJECT['project']['version']}"
    tag = f"imfuse:{PYPROJECT['project']['version']}{'-gpu' if gpu else ''}"
    assert f"-t {tag} " in text, f"{name} should document building {tag}"
    assert any(k == "RUN" and re.search(r"pip install[^&]*\s\.(\s|$)", v) for k, v in steps), "installs the project"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu", "Dockerfile.beam"])
def test_project_images_run_as_non_root_and_install_nothing_at_start(name):
    steps = parse_dockerfile(REPO / "components" / name)
    users = [v for k, v in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    for kind in ("CMD", "ENTRYPOINT"):
        for _, value in (s for s in steps if s[0] == kind):
            assert "pip" not in value and "install" not in value, f"{name} {kind} installs at start: {value}"
    # Everything after the last USER runs as that user at build time: no installs there.
    last_user = max(i for i, (k, _) in enumerate(steps) if k == "USER")
    assert not [v for k, v in steps[last_user:] if k == "RUN" and "pip" in v]


def test_beam_worker_image_is_the_project_stack_with_beams_boot_entrypoint():
    """components/Dockerfile.beam: the KFP image's base and pins, started by Beam's boot program."""
    path = REPO / "components" / "Dockerfile.beam"
    text, steps = path.read_text(), parse_dockerfile(path)
    kfp = REPO / "components" / "Dockerfile"
    assert [v for k, v in steps if k == "FROM"] == [v for k, v in parse_dockerfile(kfp) if k == "FROM"]
    pins = pyproject_pins()
    assert dockerfile_pins(text) == pins == dockerfile_pins(kfp.read_text())
    assert any(k == "RUN" and re.search(r"pip install[^&]*\s\.(\s|$)", v) for k, v in steps), "installs the project"

    py = re.fullmatch(r">=(\d+\.\d+),<.*", PYPROJECT["project"]["requires-python"]).group(1)
    sdk = f"apache/beam_python{py}_sdk:{pins['apache-beam']}"  # boot of the same Beam and Python
    copies = [shlex.split(v) for k, v in steps if k == "COPY" and v.startswith("--from")]
    assert copies == [[f"--from={sdk}", "/opt/apache/beam", "/opt/apache/beam"]]
    entrypoints = [exec_form(v) for k, v in steps if k == "ENTRYPOINT"]
    assert entrypoints[-1:] == [["/opt/apache/beam/boot"]]
    assert not [v for k, v in steps if k == "CMD"]  # a CMD would become boot's arguments
    # boot creates a per-worker virtualenv there: the image's (non-root) user must own it.
    uid = [v for k, v in steps if k == "USER"][-1].split(":")[0]
    assert any(k == "RUN" and f"chown {uid}:{uid} /opt/apache/beam-venv" in v for k, v in steps)

    tag = f"imfuse-beam:{PYPROJECT['project']['version']}"
    assert f"docker build -f components/Dockerfile.beam -t {tag} ." in text
    docs = (REPO / "docs" / "beam_runners.md").read_text()
    assert f"docker build -f components/Dockerfile.beam -t REGISTRY/{tag} ." in docs
    images = re.findall(r"--sdk_container_image=([^\s`]+)", docs)
    assert images and {image.rsplit("/", 1)[-1] for image in images} == {tag}  # never the KFP image


def test_dockerignore_keeps_what_the_dockerfiles_copy():
    patterns = [
        p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    assert ".venv" in patterns and ".git" in patterns
    for dockerfile in (REPO / "components" / "Dockerfile", REPO / "components" / "Dockerfile.gpu",
                       REPO / "components" / "Dockerfile.beam", SERVING / "Dockerfile"):
        for kind, args in parse_dockerfile(dockerfile):
            if kind != "COPY" or args.startswith("--from"):
                continue
            for src in shlex.split(args)[:-1]:
                for pattern in patterns:
                    ignored = fnmatch.fnmatch(src, pattern) or src.startswith(pattern.rstrip("/") + "/")
                    assert not ignored, f"{dockerfile.name} copies {src}, which .dockerignore drops ({pattern})"
