"""Registry CLI (list/promote/compare), the promotion gate and tracking errors at the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from imfuse.cli import main
from imfuse.errors import TrackingError
from imfuse.tracking.registry import champion_metric, promote
from imfuse.tracking.runs import TrainingRun, log_to_run
from imfuse.training.report import decide_blessing

try:
    from tests.mlflow_server import mlflow_server, register_file  # noqa: F401 - pytest fixture
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from mlflow_server import mlflow_server, register_file  # noqa: F401

GATE = "eval/style_loss_unseen"


def _version(url, tmp_path, name, tag, metrics, blessed=None) -> tuple[int, str]:
    """Register a model version whose run carries fake evaluation results."""
    model = tmp_path / f"{tag}.keras"
    model.write_bytes(tag.encode())
    with TrainingRun(url, tmp_path / tag, "reduced", {"tag": tag}) as run:
        run.log_metrics({"train/loss": metrics.pop("train/loss", 1.0)}, step=1)
        version = register_file(run, model, name=name)
    tags = {} if blessed is None else {"imfuse.blessed": str(blessed).lower()}
    log_to_run(url, run.run_id, metrics=metrics, tags=tags)
    return version, run.run_id


def test_decide_blessing_rules():
    ok = decide_blessing(GATE, 1.0, None, candidate_style_loss=1.0, identity_style_loss=2.0)
    assert ok.blessed and ok.champion is None and "no champion" in ok.reason
    worse = decide_blessing(GATE, 1.2, 1.0, 1.0, 2.0, tolerance=0.1, champion_version=3)
    assert not worse.blessed and "> champion v3 1" in worse.reason
    within = decide_blessing(GATE, 1.2, 1.0, 1.0, 2.0, tolerance=0.25)
    assert within.blessed
    no_style = decide_blessing(GATE, 0.5, 1.0, candidate_style_loss=3.0, identity_style_loss=2.0)
    assert not no_style.blessed and ">= identity" in no_style.reason
    assert not decide_blessing(GATE, float("nan"), None, 1.0, 2.0).blessed
    assert set(ok.to_dict()) >= {"blessed", "metric", "candidate", "champion", "reason"}
    # better on the dataset's unseen styles, worse on the real reference styles: refused
    traded = decide_blessing(GATE, 0.5, 0.64, 1.0, 2.0, baseline="init model", reference=(3.2, 1.7))
    assert not traded.blessed and "on real reference styles 3.2 > 1.7" in traded.reason
    assert (traded.reference_candidate, traded.reference_champion) == (3.2, 1.7)
    assert decide_blessing(GATE, 0.5, 0.64, 1.0, 2.0, reference=(1.6, 1.7)).blessed
    assert decide_blessing(GATE, 0.5, 0.64, 1.0, 2.0, tolerance=1.0, reference=(3.2, 1.7)).blessed
    assert not decide_blessing(GATE, 0.5, 0.64, 1.0, 2.0, reference=(float("nan"), 1.7)).blessed


def test_gate_blocks_a_worse_candidate_and_cli_promotes(mlflow_server, tmp_path, capsys):
    name = "gate-reduced"
    good, good_run = _version(mlflow_server, tmp_path, name, "good", {GATE: 1.0, "train/loss": 2.0}, blessed=True)
    bad, _ = _version(mlflow_server, tmp_path, name, "bad", {GATE: 1.5, "train/loss": 3.0}, blessed=False)
    assert (good, bad) == (1, 2)

    assert champion_metric(name, GATE, mlflow_server) == (None, None)
    assert main(["registry", "promote", name, str(good), "--require-blessing", "--mlflow-uri", mlflow_server]) == 0
    assert "gate-reduced version 1 is now champion" in capsys.readouterr().out
    info, value = champion_metric(name, GATE, mlflow_server)
    assert info.version == 1 and info.run_id == good_run and value == 1.0

    # the candidate's evaluation (1.5) is worse than the champion's (1.0): not blessed
    verdict = decide_blessing(GATE, 1.5, value, candidate_style_loss=1.5, identity_style_loss=5.0,
                              champion_version=info.version)
    assert not verdict.blessed and "1.5 > champion v1 1" in verdict.reason
    # and the registry refuses to promote it when a blessing is required
    assert main(["registry", "promote", name, str(bad), "--require-blessing", "--mlflow-uri", mlflow_server]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not blessed" in err and "Traceback" not in err
    assert champion_metric(name, GATE, mlflow_server)[0].version == 1

    assert main(["registry", "list", "--name", name, "--mlflow-uri", mlflow_server]) == 0
    out = capsys.readouterr().out
    assert "gate-reduced: 2 version(s)" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "champion" in lines["v1"] and "challenger" in lines["v2"] and f"{GATE}=1.5" in lines["v2"]
    assert "blessed=true" in lines["v1"] and "blessed=false" in lines["v2"]

    assert main(["registry", "compare", "--name", name, "--metrics", GATE, "train/loss", "--mlflow-uri", mlflow_server]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["model", "version", "aliases", "run_id", GATE, "train/loss"]
    rows = {row.split()[1]: row.split() for row in table[2:]}
    assert rows["1"][-2:] == ["1", "2"] and rows["2"][-2:] == ["1.5", "3"]


def test_promote_refuses_unknown_version_and_unevaluated(mlflow_server, tmp_path, capsys):
    name = "promote-reduced"
    version, _ = _version(mlflow_server, tmp_path, name, "only", {})
    assert main(["registry", "promote", name, "7", "--mlflow-uri", mlflow_server]) == 2
    assert "has no version 7" in capsys.readouterr().err
    with pytest.raises(TrackingError, match="no evaluation"):
        promote(name, version, mlflow_server, require_blessing=True)
    assert main(["registry", "promote", "no-such-model", "1", "--mlflow-uri", mlflow_server]) == 2
    assert "no registered model named 'no-such-model'" in capsys.readouterr().err
    assert promote(name, version, mlflow_server).aliases == ["challenger", "champion"]


def test_cli_server_down_is_one_line_exit_2(capsys):
    from imfuse.tracking.server import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    for argv in (["registry", "list"], ["registry", "compare"], ["registry", "promote", "imfuse-reduced", "1"]):
        assert main([*argv, "--mlflow-uri", dead]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("imfuse: error: cannot reach the MLflow tracking server at " + dead)
        assert "\n" not in err


def test_downloads_without_a_destination_are_removed_at_exit(tmp_path):
    """download_model's own temp folders live as long as the process that reads them."""
    import subprocess
    import sys

    code = ("from imfuse.tracking.registry import _scratch_dir; p = _scratch_dir('imfuse-test-'); "
            "(p / 'model.keras').write_bytes(b'x'); print(p)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.name.startswith("imfuse-test-") and not path.exists()
