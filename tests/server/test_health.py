"""Health: the standard gRPC health service, REST liveness/readiness, and listing models."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import waiting
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_http import call, get

if TYPE_CHECKING:
    from conftest import ServerProcess


@pytest.fixture(scope="module")
def server(exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(f"--model_config_file={exported_models / 'models.config'}",
                               "--enable_grpc_healthcheck_service")


def health_check(server: ServerProcess, service: str) -> Any:
    stub = health_pb2_grpc.HealthStub(server.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)


@pytest.mark.parametrize("service", ["", "ModelService", "PredictionService"])
def test_grpc_health_serves_tf_servings_service_names(server: ServerProcess, service: str) -> None:
    assert health_check(server, service).status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_health_answers_not_found_for_other_services(server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        health_check(server, "tensorflow.serving.Nope")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_health_is_off_without_its_flag(exported_models: Path,
                                             start_server: Callable[..., ServerProcess]) -> None:
    plain = start_server(f"--model_base_path={exported_models / 'half_plus_two'}")
    with pytest.raises(grpc.RpcError) as caught:
        health_check(plain, "")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_liveness_and_readiness_when_every_model_is_available(server: ServerProcess) -> None:
    assert get(server.rest_port, "/healthz").status == 200
    ready = get(server.rest_port, "/readyz")
    assert ready.status == 200
    document = ready.json()
    assert document["ready"] is True
    assert document["models"]["two_versions"]["available_versions"] == ["123", "124"]


def test_health_routes_refuse_other_methods(server: ServerProcess) -> None:
    assert call(server.rest_port, "POST", "/readyz", b"").status == 405


def test_list_models_names_every_configured_model(server: ServerProcess,
                                                  exported_models: Path) -> None:
    reply = get(server.rest_port, "/berth/v1/models")
    assert reply.status == 200
    models = {m["name"]: m for m in reply.json()["models"]}
    assert set(models) == {"half_plus_two", "half_plus_two_tf2", "half_plus_three",
                           "two_versions", "multi_io", "string_model", "mlp"}
    statuses = models["two_versions"]["model_version_status"]
    assert [(s["version"], s["state"]) for s in statuses] == [("123", "AVAILABLE"),
                                                              ("124", "AVAILABLE")]


def test_tf_servings_v1_models_without_a_name_is_still_an_error(server: ServerProcess) -> None:
    reply = get(server.rest_port, "/v1/models")
    assert (reply.status, reply.error) == (400, "Missing model name in request.")


def test_readiness_follows_availability(tmp_path: Path, exported_models: Path,
                                        start_server: Callable[..., ServerProcess]) -> None:
    base = tmp_path / "half_plus_two"
    shutil.copytree(exported_models / "half_plus_two", base)
    server = start_server(f"--model_base_path={base}", "--model_name=half_plus_two",
                          "--file_system_poll_wait_seconds=1")
    assert get(server.rest_port, "/readyz").status == 200
    shutil.move(str(base / "123"), str(tmp_path / "parked"))
    waiting.wait_for(lambda: get(server.rest_port, "/readyz").status,
                     until=lambda status: status == 503,
                     timeout_seconds=60, message="/readyz to answer 503")
    assert get(server.rest_port, "/readyz").json()["models"] == {
        "half_plus_two": {"available_versions": []}}
    assert get(server.rest_port, "/healthz").status == 200
    shutil.move(str(tmp_path / "parked"), str(base / "123"))
    waiting.wait_for(lambda: get(server.rest_port, "/readyz").status,
                     until=lambda status: status == 200,
                     timeout_seconds=60, message="/readyz to answer 200 again")


def test_with_rest_open_while_loading_probes_are_answered_before_the_model_is(
        tmp_path: Path, exported_models: Path,
        start_server: Callable[..., ServerProcess]) -> None:
    """What a pod's probes need during a long load: liveness 200, readiness 503, then 200."""
    base = tmp_path / "half_plus_two"
    (base / "123" / "variables").mkdir(parents=True)  # a version still being copied
    server = start_server(f"--model_base_path={base}", "--model_name=half_plus_two",
                          "--file_system_poll_wait_seconds=1", "--rest_api_open_while_loading",
                          wait=False)
    server.wait_ready()  # the REST port, before any model
    assert get(server.rest_port, "/healthz").status == 200
    assert get(server.rest_port, "/readyz").status == 503
    early = call(server.rest_port, "POST", "/v1/models/half_plus_two:predict",
                 {"instances": [1.0]})
    assert (early.status, early.error) == (
        404, "Servable not found for request: Latest(half_plus_two)")
    shutil.rmtree(base / "123")
    shutil.copytree(exported_models / "half_plus_two" / "123", base / "123")
    waiting.wait_for(lambda: get(server.rest_port, "/readyz").status,
                     until=lambda status: status == 200, timeout_seconds=60,
                     message="/readyz to answer 200 once the version loaded")
    assert call(server.rest_port, "POST", "/v1/models/half_plus_two:predict",
                {"instances": [1.0]}).json() == {"predictions": [2.5]}
