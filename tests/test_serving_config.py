"""TF Serving config files parsed with TF Serving's protos."""

from pathlib import Path

import pytest

from imfuse.errors import ConfigError
from imfuse.serving.config import (
    BatchingOptions,
    VersionPolicy,
    load_batching_file,
    load_model_config_file,
    parse_batching_text,
    parse_model_config_text,
    parse_version_labels,
)

REPO = Path(__file__).resolve().parents[1]

MODELS_CONFIG = """
model_config_list {
  config {
    name: "imfuse"
    base_path: "/models/imfuse"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "other" base_path: "/models/other" model_version_policy { all {} } }
  config { name: "third" base_path: "/models/third" model_version_policy { latest { num_versions: 2 } } }
}
"""


def test_model_config_list_parsed_with_policies_and_labels():
    imfuse, other, third = parse_model_config_text(MODELS_CONFIG)
    assert imfuse.name == "imfuse" and imfuse.base_path == "/models/imfuse"
    assert imfuse.policy == VersionPolicy("specific", versions=(1, 2))
    assert imfuse.labels == {"stable": 1, "canary": 2}
    assert other.policy.kind == "all"
    assert third.policy == VersionPolicy("latest", num_versions=2)


def test_version_policy_selection():
    available = [3, 1, 2, 7]
    assert VersionPolicy().select(available) == [7]
    assert VersionPolicy("latest", num_versions=2).select(available) == [3, 7]
    assert VersionPolicy("all").select(available) == [1, 2, 3, 7]
    assert VersionPolicy("specific", versions=(2, 9)).select(available) == [2]


def test_bad_model_config_names_the_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name: 'x' bogus_field: 1 } }")
    with pytest.raises(ConfigError, match="models.config"):
        load_model_config_file(path)
    with pytest.raises(ConfigError, match="not found"):
        load_model_config_file(tmp_path / "missing.config")
    with pytest.raises(ConfigError, match="base_path"):
        parse_model_config_text("model_config_list { config { name: 'x' } }")


def test_batching_parameters_text_proto(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n"
        "max_enqueued_batches { value: 4 }\nnum_batch_threads { value: 2 }\n"
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 16\npad_variable_length_inputs: false\n"
    )
    assert load_batching_file(path) == BatchingOptions(16, 1000, 4, 2)
    # unset fields keep defaults
    assert parse_batching_text("max_batch_size { value: 4 }").batch_timeout_micros == BatchingOptions().batch_timeout_micros
    with pytest.raises(ConfigError, match="BatchingParameters"):
        parse_batching_text("max_batch_size: 4")  # wrapper type needs { value: }
    with pytest.raises(ConfigError, match="max_batch_size"):
        parse_batching_text("max_batch_size { value: 0 }")


def test_version_labels_flag():
    assert parse_version_labels("stable=1, canary=2") == {"stable": 1, "canary": 2}
    assert parse_version_labels(None) == {}
    with pytest.raises(ConfigError, match="stable"):
        parse_version_labels("stable:1")


@pytest.mark.parametrize("name", ["models.config", "batching.config"])
def test_repo_serving_artefacts_parse(name):
    """The production configs in serving/ must be accepted by the local server too."""
    path = REPO / "serving" / name
    if not path.exists():
        pytest.skip(f"serving/{name} not written yet")
    if name == "models.config":
        models = load_model_config_file(path)
        assert any(m.name == "imfuse" for m in models)
    else:
        assert load_batching_file(path).max_batch_size >= 1
