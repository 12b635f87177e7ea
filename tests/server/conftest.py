"""Fixtures that run `berth-server` as users do: a subprocess on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from examples import export_models

QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A running `python -m berth_server` with its ports, log and official gRPC stubs."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.log_path = log_path
        self.args = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", *args]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "berth_server", *self.args], stdout=self._log,
            stderr=subprocess.STDOUT, env={**os.environ, **QUIET_TF, **(env or {})})
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(self.channel)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_seconds: float = 90) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.rest_port), timeout=0.2):
                return
            time.sleep(0.1)
        raise AssertionError(f"server did not start in {timeout_seconds}s:\n{self.log()}")

    def stop(self) -> int:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example model, exported once per session; returns the dir holding models.config."""
    out = tmp_path_factory.mktemp("models")
    export_models.export_all(out)
    return out


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """Start servers with given flags; every one is stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> ServerProcess:
        server = ServerProcess(list(args), tmp_path / f"server-{len(started)}.log", env)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory,
                  exported_models: Path) -> Iterator[ServerProcess]:
    """One server over every example model, shared by a module's read-only tests."""
    log_dir = tmp_path_factory.mktemp("shared-server")
    server = ServerProcess([f"--model_config_file={exported_models / 'models.config'}"],
                           log_dir / "server.log")
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Like `start_server`, but its servers live until the module's last test (read-only tests)."""
    started: list[ServerProcess] = []
    log_dir = tmp_path_factory.mktemp("module-server")

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(list(args), log_dir / f"server-{len(started)}.log", env)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
