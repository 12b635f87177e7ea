"""Fixtures that run `berth-server` as users do: a subprocess on free loopback ports."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import grpc
import processes
import pytest
import waiting
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from examples import export_models

QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}
STOP_GRACE_SECONDS = 30
_STARTED = pytest.StashKey[list["ServerProcess"]]()


class ServerProcess:
    """A running `python -m berth_server` with its ports, log and official gRPC stubs."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.grpc_port = processes.free_port()
        self.rest_port = processes.free_port()
        self.log_path = log_path
        self.args = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}", *args]
        self._process = processes.start(
            [sys.executable, "-m", "berth_server", *self.args], name="server", log_path=log_path,
            env={**os.environ, **QUIET_TF, **(env or {})})
        self.process = self._process.popen
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(self.channel)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log(self) -> str:
        return self._process.log()

    def log_tail(self, lines: int = processes.LOG_TAIL_LINES) -> str:
        return self._process.log_tail(lines)

    def wait_ready(self, timeout_seconds: float = 120) -> None:
        """Until the REST port accepts (the server opens it last); fails if the server exits."""
        self._process.wait_until(lambda: processes.port_accepts(self.rest_port),
                                 timeout_seconds=timeout_seconds, interval_seconds=0.1,
                                 message=f"the server's REST port {self.rest_port}")

    def wait_for_log(self, text: str, *, count: int = 1, timeout_seconds: float = 60) -> None:
        """Until `text` is in the log `count` times (the last value seen is how many times)."""
        waiting.wait_for(lambda: self.log().count(text), until=lambda seen: seen >= count,
                         timeout_seconds=timeout_seconds,
                         message=f"{count} x {text!r} in the server log")

    def stop(self) -> int:
        """SIGTERM, SIGKILL after STOP_GRACE_SECONDS; returns the exit status (idempotent)."""
        self.channel.close()
        return self._process.stop(grace_seconds=STOP_GRACE_SECONDS)


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example model, exported once per session; returns the dir holding models.config."""
    out = tmp_path_factory.mktemp("models")
    export_models.export_all(out)
    return out


@pytest.fixture
def start_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """Start servers with given flags; every one is stopped at the end of the test."""
    started: list[ServerProcess] = []
    request.node.stash[_STARTED] = started

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log tail of every server a failed test used."""
    report = yield
    if report.failed:
        servers = [v for v in getattr(item, "funcargs", {}).values()
                   if isinstance(v, ServerProcess)]
        for server in dict.fromkeys([*servers, *item.stash.get(_STARTED, [])]):
            report.sections.append((f"server log {server.log_path.name} (tail)",
                                    server.log_tail()))
    return report
