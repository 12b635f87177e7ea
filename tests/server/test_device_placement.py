"""`--model_device_placement` on the real server, on a machine without a GPU: a model pinned to
the CPU serves; one pinned to a GPU fails its load in words naming the device; bad values are
usage errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import tensorflow as tf
import waiting
from server_http import get, post

if TYPE_CHECKING:
    from conftest import ServerProcess

MISSING_GPU = "on /device:GPU:0, which this server does not have; its devices: /device:CPU:0"


def run_to_exit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_NAME", "MODEL_BASE_PATH")}
    return subprocess.run([sys.executable, "-m", "berth_server", *args], capture_output=True,
                          text=True, timeout=120, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture
def half_plus_two(exported_models: Path) -> str:
    return f"--model_base_path={exported_models / 'half_plus_two'}"


def test_a_model_pinned_to_the_cpu_serves_correct_predictions(
        start_server: Callable[..., ServerProcess], half_plus_two: str) -> None:
    server = start_server("--model_name=hp", half_plus_two,
                          "--model_device_placement=hp=/cpu:0")
    reply = post(server.rest_port, "/v1/models/hp:predict", {"instances": [1.0, 2.0, 5.0]})
    assert reply.json() == {"predictions": [2.5, 3.0, 4.5]}
    assert "Placing servable version {name: hp version: 123} on /device:CPU:0" in server.log()


def test_a_model_pinned_to_a_missing_gpu_fails_startup_naming_the_device(
        tmp_path: Path, half_plus_two: str) -> None:
    result = run_to_exit("--model_name=hp", half_plus_two, "--max_num_load_retries=0",
                         "--port=0", f"--grpc_socket_path={tmp_path / 'grpc.sock'}",
                         "--model_device_placement=hp=/device:GPU:0")
    assert result.returncode == 1
    assert "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: " \
           "{hp: --model_device_placement puts " in result.stderr
    assert MISSING_GPU in result.stderr


def test_the_failed_load_shows_in_the_model_status(
        start_server: Callable[..., ServerProcess], half_plus_two: str) -> None:
    # A model that cannot load fails startup (as in TF Serving), so the status is read while
    # the server waits to retry, with REST open during loading; gRPC opens only once loaded.
    server = start_server("--model_name=hp", half_plus_two, "--rest_api_open_while_loading",
                          "--max_num_load_retries=100", "--load_retry_interval_micros=600000000",
                          "--model_device_placement=hp=/device:GPU:0")

    def version_status() -> dict[str, Any]:
        reply = get(server.rest_port, "/v1/models/hp")
        rows = reply.json().get("model_version_status", []) if reply.status == 200 else []
        return rows[0] if rows else {}

    row = waiting.wait_for(version_status,
                           until=lambda row: bool(row) and row["status"]["error_code"] != "OK",
                           timeout_seconds=60, message="hp's load error")
    assert row["state"] == "LOADING"
    assert row["status"]["error_code"] == "INVALID_ARGUMENT"
    assert MISSING_GPU in row["status"]["error_message"]


def test_a_placement_for_a_model_served_from_tflite_fails_its_load(
        tmp_path: Path, exported_models: Path) -> None:
    base = tmp_path / "hp"
    shutil.copytree(exported_models / "half_plus_two", base)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(lambda x: x * 0.5 + 2.0).get_concrete_function(
            tf.TensorSpec([1, 1], tf.float32))])
    (base / "123" / "model.tflite").write_bytes(converter.convert())
    result = run_to_exit("--model_name=hp", f"--model_base_path={base}",
                         "--max_num_load_retries=0", "--prefer_tflite_model",
                         "--port=0", f"--grpc_socket_path={tmp_path / 'grpc.sock'}",
                         "--model_device_placement=hp=/device:CPU:0")
    assert result.returncode == 1
    assert "by the TF Lite interpreter, which cannot be placed on /device:CPU:0" in result.stderr


@pytest.mark.parametrize(("value", "words"), [
    ("hp", "--model_device_placement: 'hp' is not model=device"),
    ("hp=/gpu:0,hp=/gpu:1", "--model_device_placement: model hp is placed twice"),
    ("hp=gpu", "--model_device_placement: 'gpu' (model hp) is not a device"),
    ("other=/gpu:0", "--model_device_placement names model(s) that are not in the model "
                     "config: other (configured: hp)"),
])
def test_a_bad_value_exits_with_a_usage_error(value: str, words: str) -> None:
    result = run_to_exit("--model_name=hp", "--model_base_path=/models/hp",
                         f"--model_device_placement={value}")
    assert result.returncode == 1
    assert f"Failed to start server. Error: INVALID_ARGUMENT: {words}" in result.stderr
