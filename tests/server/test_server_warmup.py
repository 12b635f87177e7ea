"""Warmup: `assets.extra/tf_serving_warmup_requests` is replayed before a version serves.

The exported half_plus_two carries one warmup record; half_plus_three has no warmup file.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow as tf
from server_http import get, post
from tensorflow_serving.apis import predict_pb2

from examples import export_models

if TYPE_CHECKING:
    from conftest import ServerProcess

WARMUP = export_models.WARMUP_FILE


def version_status(server: ServerProcess, version: int) -> dict[str, object] | None:
    reply = get(server.rest_port, "/v1/models/m")
    for row in reply.json().get("model_version_status", []) if reply.status == 200 else []:
        if row["version"] == str(version):
            return dict(row)
    return None


def wait_for_end(server: ServerProcess, version: int, timeout_seconds: float = 30) -> dict:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        row = version_status(server, version)
        if row is not None and row["state"] == "END":
            return row
        time.sleep(0.1)
    raise AssertionError(f"version {version} did not reach END:\n{server.log()}")


def damage(path: Path) -> None:
    """Flip one byte inside the first record's payload: its CRC no longer matches."""
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))


def serve_with_new_version(start_server: Callable[..., ServerProcess], tmp_path: Path,
                           exported_models: Path) -> tuple[ServerProcess, Path]:
    """Serve half_plus_two as version 1 of `m`; return the server and a version 2 dir to fill."""
    base = tmp_path / "m"
    shutil.copytree(exported_models / "half_plus_two" / "123", base / "1")
    server = start_server("--model_name=m", f"--model_base_path={base}",
                          "--file_system_poll_wait_seconds=1", "--max_num_load_retries=0")
    return server, base / "2"


def test_warmup_records_are_replayed_before_the_version_serves(
        start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
    server = start_server("--model_name=half_plus_two",
                          f"--model_base_path={exported_models / 'half_plus_two'}")
    log = server.log()
    finished = log.index("Finished reading warmup data for model at ")
    assert "Number of warmup records read: 1." in log[finished:]
    assert finished < log.index("Successfully loaded servable version {name: half_plus_two")


def test_a_missing_warmup_file_is_fine(
        start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
    server = start_server("--model_name=half_plus_three",
                          f"--model_base_path={exported_models / 'half_plus_three'}")
    assert "No warmup data file found at " in server.log()
    assert post(server.rest_port, "/v1/models/half_plus_three:predict",
                {"instances": [1.0]}).json() == {"predictions": [3.5]}


def test_warmup_is_skipped_when_turned_off(
        start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
    server = start_server("--model_name=half_plus_two",
                          f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--enable_model_warmup=false")
    assert "warmup data" not in server.log()


def test_a_damaged_warmup_file_fails_the_load_with_data_loss(
        start_server: Callable[..., ServerProcess], tmp_path: Path,
        exported_models: Path) -> None:
    server, version_dir = serve_with_new_version(start_server, tmp_path, exported_models)
    staging = tmp_path / "staging"
    shutil.copytree(exported_models / "half_plus_two" / "123", staging)
    damage(staging / WARMUP)
    staging.rename(version_dir)
    row = wait_for_end(server, 2)
    status = row["status"]
    assert isinstance(status, dict)
    assert status["error_code"] == "DATA_LOSS"
    assert "Please verify your warmup data is in TFRecord format." in status["error_message"]
    assert post(server.rest_port, "/v1/models/m:predict",
                {"instances": [1.0]}).json() == {"predictions": [2.5]}  # version 1 serves


def test_too_many_warmup_records_fail_the_load(
        start_server: Callable[..., ServerProcess], tmp_path: Path,
        exported_models: Path) -> None:
    server, version_dir = serve_with_new_version(start_server, tmp_path, exported_models)
    staging = tmp_path / "staging"
    shutil.copytree(exported_models / "half_plus_two" / "123", staging)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    export_models.write_warmup(staging, [request] * 1001)
    staging.rename(version_dir)
    status = wait_for_end(server, 2)["status"]
    assert isinstance(status, dict)
    assert status["error_code"] == "INVALID_ARGUMENT"
    assert "Number of warmup records exceeds the maximum (1000)" in status["error_message"]


def test_a_damaged_warmup_file_at_startup_fails_the_server(
        tmp_path: Path, exported_models: Path,
        start_server: Callable[..., ServerProcess]) -> None:
    base = tmp_path / "m"
    shutil.copytree(exported_models / "half_plus_two" / "123", base / "1")
    damage(base / "1" / WARMUP)
    server = start_server("--model_name=m", f"--model_base_path={base}",
                          "--max_num_load_retries=0", wait=False)
    assert server.process.wait(timeout=120) != 0
    log = server.log()
    assert "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available" in log
    assert "Please verify your warmup data is in TFRecord format." in log
