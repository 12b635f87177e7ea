"""Starting the server as users do: flags in every syntax, the environment, and startup errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from server_http import call, post

if TYPE_CHECKING:
    from conftest import ServerProcess


def run_to_exit(*args: str, timeout_seconds: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m berth_server` expecting it to exit by itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_NAME", "MODEL_BASE_PATH")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([sys.executable, "-m", "berth_server", *args], capture_output=True,
                          text=True, timeout=timeout_seconds, env=env)


class TestStartupErrors:
    def test_no_base_path_and_no_config_fails_with_tf_servings_wording(self) -> None:
        result = run_to_exit("--port=0", "--rest_api_port=0")
        assert result.returncode != 0
        assert ("Failed to start server. Error: INVALID_ARGUMENT: Both "
                "server_options.model_base_path and server_options.model_config_file are "
                "empty!") in result.stderr

    def test_an_unknown_flag_is_a_clear_error(self) -> None:
        result = run_to_exit("--model_base_path=/models/m", "--no_such_flag=1")
        assert result.returncode != 0
        assert "unknown argument: --no_such_flag=1" in result.stderr

    def test_a_bad_boolean_value_names_the_flag(self) -> None:
        result = run_to_exit("--model_base_path=/models/m", "--enable_batching=maybe")
        assert result.returncode != 0
        assert "Illegal value 'maybe' specified for bool flag 'enable_batching'" in result.stderr

    def test_a_bad_integer_value_names_the_flag(self) -> None:
        result = run_to_exit("--model_base_path=/models/m", "--port", "http")
        assert result.returncode != 0
        assert "'port'" in result.stderr

    def test_version_prints_both_versions_and_exits_zero(self) -> None:
        result = run_to_exit("--version")
        assert result.returncode == 0
        lines = result.stdout.splitlines()
        assert lines[0].startswith("TensorFlow ModelServer: ")
        assert lines[1].startswith("TensorFlow Library: ")

    def test_an_unparseable_config_file_fails_startup(self, tmp_path: Path) -> None:
        config = tmp_path / "models.config"
        config.write_text("model_config_list { config { name: ")
        result = run_to_exit(f"--model_config_file={config}", "--port=0",
                             f"--grpc_socket_path={tmp_path / 'grpc.sock'}")
        assert result.returncode != 0
        assert "Failed to start server. Error: " in result.stderr
        assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in result.stderr

    def test_a_missing_config_file_fails_startup(self, tmp_path: Path) -> None:
        result = run_to_exit(f"--model_config_file={tmp_path / 'nope.config'}")
        assert result.returncode != 0
        assert "Failed to start server. Error: " in result.stderr

    def test_a_model_that_fails_to_load_fails_startup(
            self, tmp_path: Path, exported_models: Path) -> None:
        base = tmp_path / "broken"
        shutil.copytree(exported_models / "half_plus_three", base)
        (base / "123" / "saved_model.pb").write_bytes(b"not a SavedModel")
        result = run_to_exit("--model_name=broken", f"--model_base_path={base}",
                             "--max_num_load_retries=0", "--port=0",
                             f"--grpc_socket_path={tmp_path / 'grpc.sock'}")
        assert result.returncode != 0
        assert "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available" \
            in result.stderr
        assert "broken" in result.stderr


class TestFlagsAndEnvironment:
    def test_space_separated_values_and_bare_booleans_are_honoured(
            self, start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
        server = start_server("--model_name", "hp", "--model_base_path",
                              str(exported_models / "half_plus_two"),
                              "--rest_api_enable_cors_support",
                              "--file_system_poll_wait_seconds", "1")
        reply = post(server.rest_port, "/v1/models/hp:predict", {"instances": [1.0]})
        assert reply.json() == {"predictions": [2.5]}
        assert reply.headers["access-control-allow-origin"] == "*"

    def test_single_dash_flags_and_explicit_false_are_honoured(
            self, start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
        server = start_server("-model_name=hp",
                              f"-model_base_path={exported_models / 'half_plus_two'}",
                              "--rest_api_enable_cors_support=false")
        reply = post(server.rest_port, "/v1/models/hp:predict", {"instances": [1.0]})
        assert reply.json() == {"predictions": [2.5]}
        assert "access-control-allow-origin" not in reply.headers

    def test_model_name_and_base_path_come_from_the_environment_as_in_the_image(
            self, start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
        server = start_server(env={"MODEL_NAME": "half_plus_three",
                                   "MODEL_BASE_PATH": str(exported_models)})
        reply = post(server.rest_port, "/v1/models/half_plus_three:predict",
                     {"instances": [1.0]})
        assert reply.json() == {"predictions": [3.5]}

    def test_flags_win_over_the_environment(
            self, start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
        server = start_server("--model_name=hp",
                              f"--model_base_path={exported_models / 'half_plus_two'}",
                              env={"MODEL_NAME": "other", "MODEL_BASE_PATH": "/nonexistent"})
        assert call(server.rest_port, "GET", "/v1/models/hp").status == 200


def test_gpus_requested_but_not_visible_are_reported_loudly(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    """A pod given a GPU by the device plugin, running a TensorFlow that cannot use it."""
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two",
                          env={"NVIDIA_VISIBLE_DEVICES": "GPU-0a1b", "CUDA_VISIBLE_DEVICES": ""})
    assert "GPUs were requested (NVIDIA_VISIBLE_DEVICES=GPU-0a1b) but TensorFlow sees none" \
        in server.log()
    assert post(server.rest_port, "/v1/models/half_plus_two:predict",
                {"instances": [1.0]}).json() == {"predictions": [2.5]}  # on CPU, still serving
