"""imfuse.tracking.runs / registry against a real `mlflow server`, checked through MlflowClient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imfuse.errors import TrackingError
from imfuse.tracking.client import default_tracking_uri, resolve_tracking_uri
from imfuse.tracking.runs import RUN_FILE, TrainingRun, flatten_params

try:
    from tests.mlflow_server import mlflow_server, register_file  # noqa: F401 - pytest fixture
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from mlflow_server import mlflow_server, register_file  # noqa: F401


def _client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"dataset_hash": "sha256:abc123"}))
    return data


def test_resolve_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/imfuse-work/mlflow.db"
    assert resolve_tracking_uri(None) == default_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000/")
    assert resolve_tracking_uri(None) == "http://tracker:5000"
    assert resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"
    assert resolve_tracking_uri("relative/store") == (tmp_path / "relative/store").resolve().as_uri()


def test_flatten_params_nests_and_stringifies():
    flat = flatten_params({"steps": 10, "loss": {"style": 100.0, "layers": ["a", "b"]}, "name": "x"})
    assert flat == {"steps": "10", "loss.style": "100.0", "loss.layers": '["a", "b"]', "name": "x"}


def test_training_run_logs_params_tags_metrics_artifacts_and_registers(mlflow_server, tmp_path):
    data = _dataset(tmp_path)
    run_dir = tmp_path / "run"
    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"not really a keras zip, but bytes to round-trip")
    params = {"data_dir": str(data), "loss_network": "vgg16-hed", "steps": 3, "weights": {"style": 100.0}}
    with TrainingRun(mlflow_server, run_dir, "reduced", params, {"extra": "yes"}) as run:
        for step in (1, 2, 3):
            run.log_metrics({"train/loss": 10.0 / step, "train/style_loss": 5.0 / step}, step=step)
        (tmp_path / "notes.txt").write_text("hello")
        run.log_artifact(tmp_path / "notes.txt", "extra")
        version = register_file(run, model_file, name="trk-reduced")
        run_id = run.run_id

    client = _client(mlflow_server)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert client.get_experiment(got.info.experiment_id).name == "imfuse"
    assert got.data.params["loss_network"] == "vgg16-hed"
    assert got.data.params["weights.style"] == "100.0"
    assert got.data.params["steps"] == "3"
    tags = got.data.tags
    assert tags["imfuse.variant"] == "reduced"
    assert tags["imfuse.loss_network"] == "vgg16-hed"
    assert tags["imfuse.dataset_hash"] == "sha256:abc123"
    assert len(tags["imfuse.git_commit"]) >= 7
    assert tags["extra"] == "yes"
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(1, 10.0), (2, 5.0), (3, 10.0 / 3)]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"extra", "model"} <= artifacts
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model.keras"]

    assert version == 1
    mv = client.get_model_version("trk-reduced", "1")
    assert mv.run_id == run_id and mv.source == f"runs:/{run_id}/model"
    assert client.get_model_version_by_alias("trk-reduced", "challenger").version == "1"
    assert json.loads((run_dir / RUN_FILE).read_text())["run_id"] == run_id


def test_training_run_resumes_same_run_and_moves_challenger(mlflow_server, tmp_path):
    run_dir = tmp_path / "run"
    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"v1")
    with TrainingRun(mlflow_server, run_dir, "reduced", {"steps": 2}) as first:
        first.log_metrics({"train/loss": 4.0}, step=2)
        assert register_file(first, model_file, name="trk-resume") == 1
    with pytest.raises(RuntimeError):
        with TrainingRun(mlflow_server, run_dir, "reduced", {"steps": 4, "new_option": 1}) as second:
            assert second.resumed and second.run_id == first.run_id
            second.log_metrics({"train/loss": 3.0}, step=4)
            model_file.write_bytes(b"v2")
            assert register_file(second, model_file, name="trk-resume") == 2
            raise RuntimeError("crash after registering")

    client = _client(mlflow_server)
    run = client.get_run(first.run_id)
    assert run.info.status == "FAILED"
    assert run.data.params["steps"] == "2"  # params are immutable; the change is recorded as a tag
    assert run.data.tags["imfuse.resumed_param.steps"] == "4"
    assert run.data.params["new_option"] == "1"
    assert [m.step for m in client.get_metric_history(first.run_id, "train/loss")] == [2, 4]
    assert client.get_model_version_by_alias("trk-resume", "challenger").version == "2"


def test_download_model_by_alias_and_version(mlflow_server, tmp_path):
    from imfuse.tracking.registry import download_model

    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"keras-bytes-1")
    with TrainingRun(mlflow_server, tmp_path / "r1", "reduced", {}) as run:
        register_file(run, model_file, name="trk-download")
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"pb")
    (saved / "variables" / "variables.index").write_bytes(b"idx")
    with TrainingRun(mlflow_server, tmp_path / "r2", "reduced", {}) as run:
        assert register_file(run, saved, name="trk-download") == 2

    first = download_model("trk-download", "1", mlflow_server, dst=str(tmp_path / "dl1"))
    assert first.name == "model.keras" and first.read_bytes() == b"keras-bytes-1"
    latest = download_model("trk-download", "challenger", mlflow_server, dst=str(tmp_path / "dl2"))
    assert latest.is_dir() and (latest / "saved_model.pb").read_bytes() == b"pb"
    assert (latest / "variables" / "variables.index").is_file()
    with pytest.raises(TrackingError, match="no alias 'champion'"):
        download_model("trk-download", "champion", mlflow_server)
    with pytest.raises(TrackingError, match="no version 9"):
        download_model("trk-download", "9", mlflow_server)
    with pytest.raises(TrackingError, match="no registered model named 'nope'"):
        download_model("nope", "1", mlflow_server)


def test_server_down_is_a_tracking_error(tmp_path):
    from imfuse.tracking.server import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match="cannot reach the MLflow tracking server"):
        with TrainingRun(dead, tmp_path / "run", "reduced", {}):
            pass


def test_default_local_store_keeps_artifacts_under_imfuse_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "m.keras").write_bytes(b"local")
    with TrainingRun(None, tmp_path / "run", "full", {"steps": 1}) as run:
        run.log_metrics({"train/loss": 1.5}, step=1)
        assert register_file(run, tmp_path / "m.keras") == 1
    client = _client(default_tracking_uri())
    exp = client.get_experiment_by_name("imfuse")
    assert exp.artifact_location == (tmp_path / "imfuse-work" / "mlartifacts").resolve().as_uri()
    assert (tmp_path / "imfuse-work" / "mlflow.db").is_file()
    stored = list((tmp_path / "imfuse-work" / "mlartifacts").rglob("m.keras"))
    assert len(stored) == 1 and stored[0].read_bytes() == b"local"
    assert client.get_model_version_by_alias("imfuse-full", "challenger").run_id == run.run_id


def test_ui_store_and_server_command_point_at_the_same_store(tmp_path, monkeypatch, capsys):
    from imfuse.cli import main
    from imfuse.errors import ConfigError
    from imfuse.tracking.server import server_command, store_for_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = store_for_uri(resolve_tracking_uri(None))
    assert store.backend_uri == f"sqlite:///{tmp_path.resolve()}/imfuse-work/mlflow.db"
    assert store.artifact_root == str(tmp_path.resolve() / "imfuse-work" / "mlartifacts")
    cmd = server_command(store, port=5123)
    assert cmd[cmd.index("--backend-store-uri") + 1] == store.backend_uri
    assert cmd[cmd.index("--artifacts-destination") + 1] == store.artifact_root
    assert cmd[cmd.index("--port") + 1] == "5123"
    with pytest.raises(ConfigError, match="already a tracking server"):
        store_for_uri("http://127.0.0.1:5000")
    assert main(["ui", "--mlflow-uri", "http://127.0.0.1:5999"]) == 0
    assert "already a server: open http://127.0.0.1:5999" in capsys.readouterr().out


def test_metric_names_are_spelled_only_in_the_names_module():
    """train/* and eval/* metric names are built by imfuse.tracking (train_metric,
    eval_metric and its constants), so a renamed metric cannot drift between the code that
    logs it and the code that reads it back (gate, registry compare, studio, pipeline lines)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    literal = re.compile(r"""["'](?:train|eval)/""")
    found = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("imfuse", "components", "pipelines")
        for path in sorted((root / folder).rglob("*.py"))
        if path != root / "imfuse" / "tracking" / "__init__.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if literal.search(line)
    ]
    assert found == []
