"""Warmup: `assets.extra/tf_serving_warmup_requests` is replayed before a version serves.

The exported half_plus_two carries one warmup record; half_plus_three has no warmup file.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import tensorflow as tf
import waiting
from google.protobuf import text_format
from server_http import get, post
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.config import model_server_config_pb2

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


def wait_for_end(server: ServerProcess, version: int) -> dict[str, object]:
    def ended() -> dict[str, object] | None:
        row = version_status(server, version)
        return row if row is not None and row["state"] == "END" else None

    return waiting.wait_for(ended, timeout_seconds=60, interval_seconds=0.1,
                            message=f"version {version} to reach END")


def damage(path: Path) -> None:
    """Flip one byte inside the first record's payload: its CRC no longer matches."""
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base path of model `m`."""
    return tmp_path_factory.mktemp("warmup") / "m"


@pytest.fixture(scope="module")
def server(base: Path, exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    """half_plus_two (one warmup record), half_plus_three (no file) and `m`, whose version 1
    is half_plus_two and whose later versions each test adds (policy `all`)."""
    shutil.copytree(exported_models / "half_plus_two" / "123", base / "1")
    config = model_server_config_pb2.ModelServerConfig()
    for name, path in (("half_plus_two", exported_models / "half_plus_two"),
                       ("half_plus_three", exported_models / "half_plus_three"), ("m", base)):
        config.model_config_list.config.add(name=name, base_path=str(path),
                                            model_platform="tensorflow")
    config.model_config_list.config[2].model_version_policy.all.SetInParent()
    config_path = base.parent / "models.config"
    config_path.write_text(text_format.MessageToString(config))
    return start_module_server(f"--model_config_file={config_path}",
                               "--file_system_poll_wait_seconds=1", "--max_num_load_retries=0")


def add_version(base: Path, exported_models: Path, version: int,
                prepare: Callable[[Path], None]) -> None:
    """Stage a copy of half_plus_two, let `prepare` change it, then move it in as `version`."""
    staging = base.parent / f"staging-{version}"
    shutil.copytree(exported_models / "half_plus_two" / "123", staging)
    prepare(staging)
    staging.rename(base / str(version))


def test_warmup_records_are_replayed_before_the_version_serves(server: ServerProcess) -> None:
    log = server.log()
    finished = log.index("Finished reading warmup data for model at ")
    assert "half_plus_two/123. Number of warmup records read: 1." in log
    assert finished < log.index("Successfully loaded servable version {name: half_plus_two ")


def test_a_missing_warmup_file_is_fine(server: ServerProcess) -> None:
    assert "No warmup data file found at " in server.log()
    assert post(server.rest_port, "/v1/models/half_plus_three:predict",
                {"instances": [1.0]}).json() == {"predictions": [3.5]}


def test_a_damaged_warmup_file_fails_the_load_with_data_loss(
        server: ServerProcess, base: Path, exported_models: Path) -> None:
    add_version(base, exported_models, 2, lambda staging: damage(staging / WARMUP))
    status = wait_for_end(server, 2)["status"]
    assert isinstance(status, dict)
    assert status["error_code"] == "DATA_LOSS"
    assert "Please verify your warmup data is in TFRecord format." in status["error_message"]
    assert post(server.rest_port, "/v1/models/m/versions/1:predict",
                {"instances": [1.0]}).json() == {"predictions": [2.5]}  # version 1 serves


def test_too_many_warmup_records_fail_the_load(
        server: ServerProcess, base: Path, exported_models: Path) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    add_version(base, exported_models, 3,
                lambda staging: export_models.write_warmup(staging, [request] * 1001))
    status = wait_for_end(server, 3)["status"]
    assert isinstance(status, dict)
    assert status["error_code"] == "INVALID_ARGUMENT"
    assert "Number of warmup records exceeds the maximum (1000)" in status["error_message"]


def test_warmup_is_skipped_when_turned_off(
        start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
    server = start_server("--model_name=half_plus_two",
                          f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--enable_model_warmup=false")
    assert "warmup data" not in server.log()


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
