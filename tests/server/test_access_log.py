"""The JSON-lines access log (sampled) and the JSON format of the server's own log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import tensorflow as tf
import waiting
from server_http import get, post
from tensorflow_serving.apis import predict_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess


def read_lines(path: Path, count: int) -> list[dict[str, Any]]:
    """The log's lines once there are `count` (it is flushed about every second)."""

    def lines() -> list[str] | None:
        found = path.read_text().splitlines() if path.exists() else []
        return found if len(found) >= count else None

    return [json.loads(line) for line in waiting.wait_for(
        lines, timeout_seconds=60, message=f"{count} lines in the access log")]


def test_every_request_is_logged_with_model_version_signature_status_and_sizes(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    log = tmp_path / "access.jsonl"
    server = start_server(f"--model_config_file={exported_models / 'models.config'}",
                          f"--access_log_file={log}")
    body = json.dumps({"instances": [1.0, 2.0]})
    assert post(server.rest_port, "/v1/models/two_versions/versions/123:predict",
                body).status == 200
    assert post(server.rest_port, "/v1/models/nope:predict", body).status == 404
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    server.predict.Predict(request, timeout=30)
    assert get(server.rest_port, "/v1/models/half_plus_two/metadata").status == 200
    lines = read_lines(log, 4)
    assert len(lines) == 4
    rest_ok, rest_missing, grpc_ok, metadata = lines
    assert rest_ok | {"time": None, "latency_micros": None, "response_bytes": None} == {
        "time": None, "entrypoint": "REST", "api": "predict", "model": "two_versions",
        "version": 123, "signature": "serving_default", "status": "OK",
        "latency_micros": None, "request_bytes": len(body), "response_bytes": None}
    assert rest_ok["response_bytes"] > 0 and rest_ok["latency_micros"] > 0
    assert rest_ok["time"].endswith("Z")
    assert (rest_missing["status"], rest_missing["model"], rest_missing["version"]) == (
        "NOT_FOUND", "nope", None)
    assert (grpc_ok["entrypoint"], grpc_ok["api"], grpc_ok["version"], grpc_ok["status"]) == (
        "GRPC", "Predict", 123, "OK")
    assert grpc_ok["request_bytes"] == request.ByteSize()
    assert (metadata["api"], metadata["model"]) == ("metadata", "half_plus_two")


def test_sampling_zero_logs_only_failures(tmp_path: Path, exported_models: Path,
                                          start_server: Callable[..., ServerProcess]) -> None:
    log = tmp_path / "access.jsonl"
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two", f"--access_log_file={log}",
                          "--access_log_sampling_rate=0")
    for _ in range(20):
        post(server.rest_port, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    with pytest.raises(grpc.RpcError):
        server.predict.Predict(request, timeout=30)  # no inputs: INVALID_ARGUMENT
    # Lines are written in the order requests finish, so a sampled-in success (there must be
    # none) would come before the failure's line: no need to wait for more than that line.
    lines = read_lines(log, 1)
    assert [(line["entrypoint"], line["status"]) for line in lines] == [
        ("GRPC", "INVALID_ARGUMENT")]


def test_json_log_format_writes_one_object_per_line(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--log_format=json")
    server.stop()
    entries = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in entries]
    assert any("is serving" in message for message in messages), server.log()
    assert any("Shutting down" in message for message in messages)
    assert {"time", "level", "logger", "message"} <= set(entries[0])


def test_bad_logging_flags_are_usage_errors(start_server: Callable[..., ServerProcess]) -> None:
    for flag in ("--log_format=xml", "--access_log_sampling_rate=2"):
        server = start_server("--model_base_path=/nonexistent", flag, wait=False)
        assert server.process.wait(timeout=60) != 0
        assert flag.split("=")[0].lstrip("-") in server.log()
