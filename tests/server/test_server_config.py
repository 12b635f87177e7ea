"""The model config at run time: reloads by polling the file and by gRPC, and broken configs.

Models are the exported half_plus_two (0.5x + 2) and half_plus_three (0.5x + 3), served by
absolute path; each test owns its server because reloads change what it serves.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import waiting
from google.protobuf import any_pb2, text_format
from server_http import get, post
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.config import model_server_config_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess

POLL_CONFIG = "--model_config_file_poll_wait_seconds=1"


def config_text(models: dict[str, Path]) -> str:
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        config.model_config_list.config.add(name=name, base_path=str(base_path),
                                            model_platform="tensorflow")
    return text_format.MessageToString(config)



def predict_status(server: ServerProcess, model: str) -> int:
    return post(server.rest_port, f"/v1/models/{model}:predict", {"instances": [2.0]}).status


def answer(server: ServerProcess, model: str) -> float:
    reply = post(server.rest_port, f"/v1/models/{model}:predict", {"instances": [2.0]})
    assert reply.status == 200, reply.body
    return float(reply.json()["predictions"][0])


@pytest.fixture
def models(exported_models: Path) -> dict[str, Path]:
    return {"half_plus_two": exported_models / "half_plus_two",
            "half_plus_three": exported_models / "half_plus_three"}


def reload(server: ServerProcess, text: str) -> model_management_pb2.ReloadConfigResponse:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Merge(text, request.config)
    return server.model_service.HandleReloadConfigRequest(request, timeout=60)


def reload_error(server: ServerProcess, text: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        reload(server, text)
    return raised.value.code(), raised.value.details()  # type: ignore[attr-defined]


class TestPollingTheConfigFile:
    def test_a_model_added_to_the_file_is_served_and_a_removed_one_is_unloaded(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            models: dict[str, Path]) -> None:
        config = tmp_path / "models.config"
        config.write_text(config_text({"half_plus_two": models["half_plus_two"]}))
        server = start_server(f"--model_config_file={config}", POLL_CONFIG)
        assert predict_status(server, "half_plus_three") == 404
        config.write_text(config_text(models))
        waiting.wait_for(lambda: predict_status(server, "half_plus_three"),
                         until=lambda status: status == 200,
                         timeout_seconds=60, message="half_plus_three to be served")
        assert answer(server, "half_plus_three") == 4.0
        config.write_text(config_text({"half_plus_three": models["half_plus_three"]}))
        waiting.wait_for(lambda: predict_status(server, "half_plus_two"),
                         until=lambda status: status == 404,
                         timeout_seconds=60, message="half_plus_two to be unloaded")
        reply = post(server.rest_port, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
        assert reply.error == "Servable not found for request: Latest(half_plus_two)"
        assert answer(server, "half_plus_three") == 4.0

    def test_a_broken_file_keeps_the_running_config_and_the_log_says_why(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            models: dict[str, Path]) -> None:
        config = tmp_path / "models.config"
        config.write_text(config_text({"half_plus_two": models["half_plus_two"]}))
        server = start_server(f"--model_config_file={config}", POLL_CONFIG)
        config.write_text("model_config_list { config { name: 'broken' ")
        waiting.wait_for(lambda: "Error parsing text-format" in server.log(),
                         timeout_seconds=60, message="the parse error")
        assert "Keeping the running model config" in server.log()
        # The next poll reads the broken file again: the poller and the server outlived it.
        server.wait_for_log("Keeping the running model config", count=2)
        assert server.process.poll() is None
        assert answer(server, "half_plus_two") == 3.0
        config.write_text(config_text(models))  # polling goes on once the file is fixed
        waiting.wait_for(lambda: predict_status(server, "half_plus_three"),
                         until=lambda status: status == 200,
                         timeout_seconds=60, message="half_plus_three to be served")

    def test_a_config_with_an_invalid_entry_keeps_the_running_config(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            models: dict[str, Path]) -> None:
        config = tmp_path / "models.config"
        config.write_text(config_text({"half_plus_two": models["half_plus_two"]}))
        server = start_server(f"--model_config_file={config}", POLL_CONFIG)
        config.write_text(config_text({"half_plus_two": models["half_plus_two"]})
                          .replace(str(models["half_plus_two"]), "relative/path"))
        waiting.wait_for(lambda: "relative/path" in server.log(),
                         timeout_seconds=60, message="the validation error")
        assert answer(server, "half_plus_two") == 3.0


class TestReloadByGrpc:
    def test_reload_returns_once_the_new_model_is_available(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            models: dict[str, Path]) -> None:
        server = start_server("--model_name=half_plus_two",
                              f"--model_base_path={models['half_plus_two']}")
        response = reload(server, config_text(models))
        assert response.status.error_code == 0
        assert answer(server, "half_plus_three") == 4.0  # no waiting after the call
        assert answer(server, "half_plus_two") == 3.0

    def test_a_model_left_out_is_unloaded_and_can_come_back(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            models: dict[str, Path]) -> None:
        config = tmp_path / "models.config"
        config.write_text(config_text(models))
        server = start_server(f"--model_config_file={config}")
        reload(server, config_text({"half_plus_three": models["half_plus_three"]}))
        waiting.wait_for(lambda: predict_status(server, "half_plus_two"),
                         until=lambda status: status == 404,
                         timeout_seconds=60, message="half_plus_two to be unloaded")
        status = get(server.rest_port, "/v1/models/half_plus_two").json()
        assert [v["state"] for v in status["model_version_status"]] == ["END"]
        reload(server, config_text(models))
        assert answer(server, "half_plus_two") == 3.0

    def test_an_invalid_config_is_refused_and_the_old_one_kept(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            models: dict[str, Path]) -> None:
        server = start_server("--model_name=half_plus_two",
                              f"--model_base_path={models['half_plus_two']}")
        twice = config_text({"half_plus_two": models["half_plus_two"]}) * 2
        code, message = reload_error(server, twice.replace("}\nmodel_config_list {", ""))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Illegal to list model half_plus_two multiple times" in message
        code, _ = reload_error(server, config_text({"m": Path("relative")}))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert answer(server, "half_plus_two") == 3.0

    def test_a_custom_model_config_is_refused(
            self, start_server: Callable[..., ServerProcess],
            models: dict[str, Path]) -> None:
        server = start_server("--model_name=half_plus_two",
                              f"--model_base_path={models['half_plus_two']}")
        request = model_management_pb2.ReloadConfigRequest()
        request.config.custom_model_config.CopyFrom(any_pb2.Any())
        with pytest.raises(grpc.RpcError) as raised:
            server.model_service.HandleReloadConfigRequest(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert answer(server, "half_plus_two") == 3.0

    def test_a_new_model_that_fails_to_load_fails_the_reload(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            models: dict[str, Path]) -> None:
        broken = tmp_path / "broken"
        shutil.copytree(models["half_plus_three"], broken)
        (broken / "123" / "saved_model.pb").write_bytes(b"not a SavedModel")
        server = start_server("--model_name=half_plus_two",
                              f"--model_base_path={models['half_plus_two']}",
                              "--max_num_load_retries=0")
        code, message = reload_error(server, config_text(
            {"half_plus_two": models["half_plus_two"], "broken": broken}))
        assert code == grpc.StatusCode.UNKNOWN
        assert "1 model(s) did not become available" in message
        assert "broken" in message
        assert answer(server, "half_plus_two") == 3.0
