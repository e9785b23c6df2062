"""Model management: off by default, on its own 127.0.0.1 admin port, base paths confined to roots."""

import os
import time
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from imfuse.errors import ConfigError
from imfuse.serving.client import PredictionClient
from imfuse.serving.server import ServerOptions, start_server
from serving_fixtures import build_toy_model, copy_version, listening_addresses


requires_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    return {1: build_toy_model(root, 1, gain=1.0), 2: build_toy_model(root, 2, gain=0.5)}


@pytest.fixture
def managed(tmp_path, built):
    """A server with model management on; models/imfuse holds versions 1 and 2."""
    base = tmp_path / "models" / "imfuse"
    copy_version(built[1], base, 1)
    copy_version(built[2], base, 2)
    running = start_server(ServerOptions(
        model_base_path=str(base), port=0, rest_port=None, host="0.0.0.0", poll_wait_s=0,
        enable_model_management=True, admin_port=0,
    ))
    yield running, base
    running.stop()


def _reload(port: int, *models: tuple[str, str]) -> model_management_pb2.ReloadConfigResponse:
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    request = model_management_pb2.ReloadConfigRequest()
    for name, base_path in models:
        cfg = request.config.model_config_list.config.add(name=name, base_path=base_path)
        cfg.model_version_policy.all.SetInParent()
    return stub.HandleReloadConfigRequest(request, timeout=20)


def _available(running, name: str = "imfuse") -> list[int]:
    return running.store.loaded_versions(name)


@requires_proc
def test_admin_port_listens_on_loopback_only_even_with_host_0000(managed):
    running, _ = managed
    assert running.admin_port and running.admin_port != running.grpc_port
    assert listening_addresses(running.admin_port) == {"127.0.0.1"}
    assert listening_addresses(running.grpc_port) <= {"0.0.0.0", "::"}  # asked for explicitly


def test_reload_on_the_predict_port_is_refused_even_when_enabled(managed):
    running, base = managed
    with pytest.raises(grpc.RpcError) as rpc:
        _reload(running.grpc_port, ("imfuse", str(base)))
    assert rpc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert _available(running) == [2]


def test_reload_inside_the_default_root_applies(managed):
    running, base = managed
    sibling = base.parent / "other"
    copy_version(base / "1", sibling, 7)
    assert _reload(running.admin_port, ("imfuse", str(base)), ("other", str(sibling))).status.error_code == 0
    assert _available(running) == [1, 2] and _available(running, "other") == [7]
    # GetModelStatus stays on the main port
    status = PredictionClient(f"127.0.0.1:{running.grpc_port}", model_name="other").status()
    assert status[0]["version"] == 7 and status[0]["state"] == "AVAILABLE"


@pytest.mark.parametrize("escape", ["outside", "dotdot", "symlink", "root itself"])
def test_reload_outside_the_roots_is_denied_and_nothing_unloads(managed, tmp_path, escape):
    running, base = managed
    outside = tmp_path / "elsewhere" / "imfuse"
    copy_version(base / "1", outside, 1)
    target = {
        "outside": str(outside),
        "dotdot": str(base.parent / ".." / "elsewhere" / "imfuse"),
        "symlink": str(base.parent / "link"),
        "root itself": str(base.parent),
    }[escape]
    if escape == "symlink":
        os.symlink(outside, base.parent / "link")
    with pytest.raises(grpc.RpcError) as rpc:
        _reload(running.admin_port, ("imfuse", target))
    assert rpc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "outside the allowed model roots" in rpc.value.details() and "--model-root" in rpc.value.details()
    assert running.store.model_names() == ["imfuse"] and _available(running) == [2]


def test_failed_load_detail_only_on_the_admin_port(managed):
    """The loopback admin port keeps a failed load's detail; the Predict port gives its id only."""
    running, base = managed
    broken = base / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    running.store.poll()
    public = PredictionClient(f"127.0.0.1:{running.grpc_port}", version=3).status()[0]["error_message"]
    admin = PredictionClient(f"127.0.0.1:{running.admin_port}", version=3).status()[0]["error_message"]
    error_id = running.store.version_states("imfuse", 3)[3].error_id
    assert public == f"version 3 failed to load; see the server log (error id {error_id})"
    assert str(broken) in admin and str(broken) not in public
    assert _available(running) == [2]


def test_symlink_swapped_after_the_check_does_not_redirect_polls(managed, tmp_path):
    """The store polls the resolved path that was checked, not the link the request named."""
    running, base = managed
    inside = base.parent / "inside"
    copy_version(base / "1", inside, 7)
    outside = tmp_path / "elsewhere"
    copy_version(base / "1", outside, 9)
    link = base.parent / "link"
    os.symlink(inside, link)
    assert _reload(running.admin_port, ("imfuse", str(base)), ("linked", str(link))).status.error_code == 0
    assert _available(running, "linked") == [7]
    link.unlink()
    os.symlink(outside, link)  # swapped after the check
    running.store.poll()
    assert _available(running, "linked") == [7]
    assert running.store.version_states("linked").keys() == {7}


def test_reload_with_a_url_or_a_bad_config_is_invalid(managed):
    running, _ = managed
    for models in ([("imfuse", "s3://models/imfuse")], [("imfuse", "")]):
        with pytest.raises(grpc.RpcError) as rpc:
            _reload(running.admin_port, *models)
        assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _available(running) == [2]


def test_explicit_model_roots_replace_the_default(tmp_path, built):
    base = tmp_path / "a" / "imfuse"
    copy_version(built[1], base, 1)
    extra = tmp_path / "b"
    copy_version(built[2], extra / "imfuse", 3)
    running = start_server(ServerOptions(
        model_base_path=str(base), port=0, rest_port=None, poll_wait_s=0,
        enable_model_management=True, admin_port=0, model_roots=(str(extra),),
    ))
    try:
        with pytest.raises(grpc.RpcError) as rpc:  # the start-up parent is no longer a root
            _reload(running.admin_port, ("imfuse", str(base)))
        assert rpc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert _reload(running.admin_port, ("imfuse", str(extra / "imfuse"))).status.error_code == 0
        deadline = time.monotonic() + 10
        while _available(running) != [3]:
            assert time.monotonic() < deadline, _available(running)
            time.sleep(0.05)
    finally:
        running.stop()


def test_admin_port_may_not_be_the_predict_port(tmp_path, built):
    base = tmp_path / "imfuse"
    copy_version(built[1], base, 1)
    with pytest.raises(ConfigError, match="admin-port"):
        start_server(ServerOptions(model_base_path=str(base), port=8765, rest_port=None,
                                   enable_model_management=True, admin_port=8765))
