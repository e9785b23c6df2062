"""ModelStore: polling, version policies, labels, failed loads, NOT_FOUND."""

import grpc
import pytest

from imfuse.serving.config import ModelConfig, VersionPolicy
from imfuse.serving.model_store import AVAILABLE, END, ModelStore
from imfuse.serving.status import StatusError
from serving_fixtures import build_toy_model, copy_version


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two toy versions built once; tests copy them into their own base paths."""
    root = tmp_path_factory.mktemp("built")
    return {1: build_toy_model(root, 1, gain=1.0), 2: build_toy_model(root, 2, gain=0.5)}


def _store(base, policy=VersionPolicy(), labels=None):
    return ModelStore([ModelConfig("imfuse", str(base), policy, labels or {})])


def test_latest_policy_loads_new_version_and_unloads_old(tmp_path, built):
    base = tmp_path / "imfuse"
    copy_version(built[1], base, 1)
    store = _store(base)
    store.poll()
    assert store.loaded_versions("imfuse") == [1]
    assert store.resolve("imfuse").version == 1
    copy_version(built[2], base, 2)
    store.poll()
    assert store.loaded_versions("imfuse") == [2]
    states = store.version_states("imfuse")
    assert states[2].state == AVAILABLE and states[1].state == END and not states[1].error


def test_incomplete_and_non_integer_folders_are_ignored(tmp_path, built):
    base = tmp_path / "imfuse"
    copy_version(built[1], base, 1)
    (base / "5" / "variables").mkdir(parents=True)  # no saved_model.pb yet: still copying
    (base / "tmp-export").mkdir()
    store = _store(base)
    store.poll()
    assert store.loaded_versions("imfuse") == [1]


def test_all_and_specific_policies(tmp_path, built):
    base = tmp_path / "imfuse"
    for v in (1, 2, 3):
        copy_version(built[1], base, v)
    store = _store(base, VersionPolicy("all"))
    store.poll()
    assert store.loaded_versions("imfuse") == [1, 2, 3]
    store = _store(base, VersionPolicy("specific", versions=(2,)))
    store.poll()
    assert store.loaded_versions("imfuse") == [2]


def test_broken_version_reports_error_and_keeps_serving_old(tmp_path, built):
    base = tmp_path / "imfuse"
    copy_version(built[1], base, 1)
    store = _store(base)
    store.poll()
    broken = base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    store.poll()
    assert store.resolve("imfuse").version == 1
    state = store.version_states("imfuse", version=2)[2]
    assert state.state == END and "saved_model.pb" in state.error


def test_labels_and_not_found(tmp_path, built):
    base = tmp_path / "imfuse"
    copy_version(built[1], base, 1)
    copy_version(built[2], base, 2)
    store = _store(base, VersionPolicy("all"), {"stable": 1, "canary": 2, "next": 3})
    store.poll()
    assert store.resolve("imfuse", label="stable").version == 1
    assert store.resolve("imfuse", label="canary").version == 2
    assert store.resolve("imfuse").version == 2
    for kwargs, text in [
        ({"name": "nope"}, "nope"),
        ({"name": "imfuse", "version": 7}, "7"),
        ({"name": "imfuse", "label": "beta"}, "beta"),
        ({"name": "imfuse", "label": "next"}, "version 3"),
    ]:
        with pytest.raises(StatusError, match=text) as info:
            store.resolve(**kwargs)
        assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_reload_drops_models(tmp_path, built):
    base = tmp_path / "imfuse"
    copy_version(built[1], base, 1)
    store = _store(base)
    store.poll()
    store.reload([ModelConfig("other", str(base))])
    assert store.model_names() == ["other"] and store.loaded_versions("other") == [1]
    with pytest.raises(StatusError):
        store.resolve("imfuse")
