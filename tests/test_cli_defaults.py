"""The CLI's flags default like the config dataclasses they fill (one source, no drift).

`imfuse train` reads TrainConfig's defaults; `imfuse evaluate` keeps literals (EvalConfig's
module imports TensorFlow, which `imfuse --help` must not), so this test holds them equal.
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from imfuse.training.config import TrainConfig


def _parser(module) -> argparse.ArgumentParser:
    subparsers = argparse.ArgumentParser().add_subparsers()
    module.register(subparsers)
    (parser,) = subparsers.choices.values()
    return parser


def _config_flags(module, config) -> dict[str, tuple[object, object]]:
    """dest -> (flag default, dataclass default) for every optional flag that fills a config field."""
    fields = {f.name: f.default for f in dataclasses.fields(config)}
    return {a.dest: (a.default, fields[a.dest]) for a in _parser(module)._actions
            if a.dest in fields and not a.required}


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_flag_defaults_are_the_configs(command):
    import importlib

    module = importlib.import_module(f"imfuse.cli.{command}")
    if command == "train":
        config = TrainConfig
    else:
        from imfuse.training.evaluate import EvalConfig as config
    pairs = _config_flags(module, config)
    assert len(pairs) >= (20 if command == "train" else 8)  # the flags really map onto the fields
    drifted = {dest: pair for dest, pair in pairs.items() if pair[0] != pair[1]}
    assert not drifted, f"flag default != {config.__name__} default: {drifted}"


def test_building_the_parser_does_not_import_tensorflow():
    """`imfuse --help` and every flag default come without TensorFlow (seconds of import
    and native start-up lines on stderr); only a command's handler loads it."""
    import subprocess
    import sys

    code = "import sys; from imfuse.cli import build_parser; build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_stylize_optimize_flags_default_like_optimize_config():
    """`imfuse stylize` keeps literals (imfuse.gatys imports TensorFlow); they must equal OptimizeConfig's."""
    from imfuse.cli import stylize
    from imfuse.gatys import OptimizeConfig

    pairs = _config_flags(stylize, OptimizeConfig)
    assert {"steps", "size", "optimizer", "learning_rate", "init", "levels", "coarse_steps"} <= set(pairs)
    assert {k: a for k, (a, b) in pairs.items() if a != b} == {}


def test_pipeline_flags_name_the_pipelines_own_cluster_defaults():
    """`imfuse pipeline run|submit --help` quotes the cluster defaults; the pipeline's
    signature (KFP reads literals there) is their source."""
    from imfuse.cli.pipeline import CLUSTER_DEFAULTS
    from pipelines.training_pipeline import imfuse_pipeline

    inputs = imfuse_pipeline.component_spec.inputs
    assert {name: inputs[name].default for name in CLUSTER_DEFAULTS} == CLUSTER_DEFAULTS


def test_train_component_defaults_are_train_configs_but_the_fine_tune_rate():
    """The pipeline trains what `imfuse train` would, except that it fine-tunes (init_from
    auto) and so starts at a tenth of the from-scratch learning rate."""
    import components

    inputs = components.train_model.component_spec.inputs
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in ("variant", "steps", "image_size", "batch_size"):
        assert inputs[name].default == fields[name], name
    assert inputs["learning_rate"].default == fields["learning_rate"] / 10
