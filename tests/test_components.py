"""The pipeline steps' plain functions (components/steps) and the component interfaces."""

import base64
import io
import json
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from components.image import image
from components.steps import export_deploy as ed
from components.steps.evaluate import render_report_html
from components.steps.prepare import dataset_metadata, prepare_stage
from components.steps.register import model_run, register_stage
from components.steps.train import train_args
from imfuse.errors import ConfigError, ModelError

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_image_names_carry_the_package_version_and_registry_prefix():
    assert image(registry="") == f"imfuse:{VERSION}"
    assert image(gpu=True, registry="") == f"imfuse:{VERSION}-gpu"
    assert image(registry="reg.example.com/ml") == image(registry="reg.example.com/ml/") == f"reg.example.com/ml/imfuse:{VERSION}"


def test_components_install_nothing_and_name_the_project_image():
    import components

    for name in ("prepare_data", "train_model", "evaluate_model", "register_model", "export_deploy_model"):
        container = getattr(components, name).component_spec.implementation.container
        assert container.image == components.IMAGE
        assert "pip install" not in " ".join(container.command), name
    outputs = components.evaluate_model.component_spec.outputs
    assert outputs["report"].type == "system.HTML@0.0.1" and outputs["metrics"].type == "system.Metrics@0.0.1"
    assert outputs["Output"].type == "Boolean"
    assert components.train_model.component_spec.outputs["model"].type == "system.Model@0.0.1"


def test_distributed_train_component_has_the_train_interface_plus_workers():
    from components.image import IMAGE
    from components.train import train_model
    from components.train_distributed import train_distributed_model

    spec, base = train_distributed_model.component_spec, train_model.component_spec
    container = spec.implementation.container
    assert container.image == IMAGE and "pip install" not in " ".join(container.command)
    assert {k: v.type for k, v in spec.outputs.items()} == {k: v.type for k, v in base.outputs.items()}
    for name, inp in base.inputs.items():  # same parameters, same defaults: the pipeline passes one dict to both
        assert (spec.inputs[name].type, spec.inputs[name].default) == (inp.type, inp.default), name
    extra = {k: v.type for k, v in spec.inputs.items() if k not in base.inputs}
    assert extra == {"workers": "Integer", "run_id": "String", "cpu_image": "String", "gpu_image": "String"}


def test_components_and_the_pipeline_declare_the_same_defaults():
    """A parameter the pipeline hands to a component defaults alike in both (no drift)."""
    import dataclasses

    import components
    from imfuse.training.evaluate import EvalConfig
    from pipelines.training_pipeline import imfuse_pipeline

    renamed = {"eval_max_pairs": "max_pairs"}
    pipeline = {renamed.get(k, k): v.default for k, v in imfuse_pipeline.component_spec.inputs.items()}
    checked = 0
    for component in (components.prepare_data, components.train_model, components.evaluate_model,
                      components.register_model, components.export_deploy_model):
        for name, inp in component.component_spec.inputs.items():
            if name in pipeline and inp.default is not None:
                assert inp.default == pipeline[name], (component.name, name)
                checked += 1
    assert checked >= 10
    from imfuse.serving.defaults import MODEL_NAME  # a component's default is a literal: the constant's value

    assert components.export_deploy_model.component_spec.inputs["model_name"].default == MODEL_NAME == pipeline["model_name"]
    evaluate = components.evaluate_model.component_spec.inputs
    library = {f.name: f.default for f in dataclasses.fields(EvalConfig)}
    for name in ("gatys_steps", "gate_tolerance", "reference_styles"):  # the CLI's `imfuse evaluate` scores the same way
        assert evaluate[name].default == library[name], name


# ---------------------------------------------------------------------------- prepare
def test_prepare_needs_both_sources_or_neither(tmp_path):
    with pytest.raises(ConfigError, match="both content_source and styles_source"):
        prepare_stage(str(tmp_path / "ds"), str(tmp_path), "", 32)


def test_prepare_real_images_and_dataset_metadata(tmp_path, shared_data):
    for kind, n in (("content", 4), ("styles", 5)):
        (tmp_path / kind).mkdir()
        for i, src in enumerate(sorted((shared_data / kind).glob("*.jpg"))[:n]):
            im = Image.open(src).convert("RGB")
            im.thumbnail((80, 80))
            im.save(tmp_path / kind / f"{i}.jpg")
    manifest = prepare_stage(str(tmp_path / "ds"), str(tmp_path / "content"), str(tmp_path / "styles"), 32)
    meta = dataset_metadata(manifest, demo=False)
    assert meta["accepted"] == 9 and meta["dataset_hash"] == manifest["dataset_hash"]
    assert meta["content_train"] + meta["content_eval"] == 4
    assert meta["style_train"] + meta["style_eval"] + meta["style_unseen"] == 5
    assert min(meta["content_eval"], meta["style_unseen"]) >= 1
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text())["image_sizes"]["content"]["shorter_side"] == 32


# ---------------------------------------------------------------------------- train / register
def test_train_args_match_the_train_cli():
    from imfuse.cli import build_parser

    argv = train_args("DATA", "RUN", "reduced", 7, 48, 2, "http://mlflow:5000")
    args = build_parser().parse_args(argv)
    assert (args.data, args.out, args.variant, args.steps, args.image_size, args.style_size, args.batch_size) == (
        "DATA", "RUN", "reduced", 7, 48, 48, 2)
    assert args.mlflow_uri == "http://mlflow:5000" and not args.register
    assert "--mlflow-uri" not in train_args("D", "R", "full", 1, 32, 1, "")
    warm = build_parser().parse_args(train_args("D", "R", "reduced", 1, 32, 1, "", "auto", 1e-4, "lite", True))
    assert (warm.init_from, warm.learning_rate, warm.teacher) == ("auto", 1e-4, "lite")
    assert (warm.content_weight, warm.style_weight, warm.tv_weight) == (0, 0, 0)
    assert "--init-from" not in train_args("D", "R", "reduced", 1, 32, 1, "")


@pytest.mark.parametrize("extra", [(), ("base", 1e-4, "lite", True), ("", 3e-4, "", False), ("", 1e-3, "", False)])
def test_train_config_is_what_the_cli_builds_from_train_args(extra):
    """The in-pod step (library call) and the TFJob pods (`imfuse train` argv, derived from
    the config's fields; a default left out) train alike."""
    from components.steps.train import train_config
    from imfuse.cli import build_parser
    from imfuse.cli.train import config_from_args

    common = ("DATA", "RUN", "reduced", 7, 48, 2, "")
    cli = config_from_args(build_parser().parse_args(train_args(*common, *extra)))
    assert train_config(*common, *extra) == cli


def test_collect_run_copies_the_run_files_but_not_the_checkpoints(tmp_path):
    from components.steps.train import collect_run

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model.keras").write_bytes(b"m")
    (run / "mlflow_run.json").write_text(json.dumps({"run_id": "r1"}))
    (run / "history.jsonl").write_text(json.dumps({"step": 3, "metrics": {"train/loss": 2.0}}) + "\n")
    info = collect_run(run, str(tmp_path / "out"), "reduced", 3, 32, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["history.jsonl", "mlflow_run.json", "model.keras"]
    assert info["mlflow_run_id"] == "r1" and info["metrics"] == {"train/loss": 2.0} and info["tracking_uri"] == ""
    (run / "model.keras").unlink()
    with pytest.raises(RuntimeError, match="without model.keras"):
        collect_run(run, str(tmp_path / "out2"), "reduced", 3, 32, 1)


def test_model_run_from_metadata_or_run_files(tmp_path):
    assert model_run(tmp_path, {"mlflow_run_id": "abc", "variant": "full"}) == ("abc", "full")
    (tmp_path / "mlflow_run.json").write_text(json.dumps({"run_id": "r1"}))
    (tmp_path / "train_config.json").write_text(json.dumps({"config": {"variant": "reduced"}}))
    assert model_run(tmp_path) == ("r1", "reduced")
    with pytest.raises(ModelError, match="mlflow_run.json"):
        model_run(tmp_path / "nothing")


def test_register_refuses_an_artefact_without_a_model(tmp_path):
    with pytest.raises(ModelError, match="model.keras not found"):
        register_stage(str(tmp_path), f"sqlite:///{tmp_path / 'm.db'}", True, {"mlflow_run_id": "r", "variant": "reduced"})


# ---------------------------------------------------------------------------- evaluate report
def test_report_html_embeds_the_grid_and_escapes_text(tmp_path):
    grid = io.BytesIO()
    Image.new("RGB", (12, 8), (10, 200, 30)).save(grid, format="PNG")
    (tmp_path / "sample_grid.png").write_bytes(grid.getvalue())
    report = {
        "registered_model": "imfuse-reduced",
        "blessing": {"blessed": False, "reason": "style loss 3 >= identity <2>"},
        "metrics": {"eval/style_loss_unseen": 3.0, "eval/content_loss": 1.5},
        "counts": {"pairs": 4}, "image_size": 32, "loss_network": "vgg16-hed", "dataset_hash": "sha256:x",
        "artifacts": {"grid": "sample_grid.png", "curves": []},
    }
    page = render_report_html(report, tmp_path)
    assert "NOT blessed" in page and "identity &lt;2&gt;" in page and "eval/style_loss_unseen" in page
    encoded = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(encoded) == grid.getvalue()


# ---------------------------------------------------------------------------- export step
@pytest.mark.parametrize("base,needle", [("", "no serving base path"), ("gs://bucket", "local/mounted folder or s3://"),
                                         ("s3://", "names no bucket")])
def test_export_rejects_bad_base_paths_before_loading_the_model(base, needle, tmp_path, monkeypatch):
    monkeypatch.delenv("IMFUSE_SERVING_BASE_PATH", raising=False)
    with pytest.raises(ConfigError, match=needle):
        ed.export_stage(str(tmp_path / "no-model-here"), base, "imfuse")
