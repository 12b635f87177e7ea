"""`--num_workers=2`: two worker processes behind the same ports, answering as one server.

Requests go out on a new connection each (REST: a connection per request; gRPC: a channel
with a subchannel pool of its own), so the kernel's SO_REUSEPORT hash picks a worker for each;
with 40 connections the chance that one worker gets none is 2 in 2**40. Which worker served a
request is the access log's `worker` field; the worker processes are the server's children.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import processes
import pytest
import tensorflow as tf
import waiting
from google.protobuf import text_format
from server_http import get, post
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from examples import export_models

if TYPE_CHECKING:
    from conftest import ServerProcess

WORKERS = "--num_workers=2"
CONNECTIONS = 40
METRICS_PATH = "/monitoring/prometheus/metrics"
REQUEST_COUNT = ":tensorflow:serving:request_count"
_SAMPLE = re.compile(r'^(?P<name>[:\w]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')


# -- talking to the server over new connections -------------------------------------------------


@contextlib.contextmanager
def fresh_channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    """A channel on a TCP connection of its own (channels otherwise share subchannels)."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}",
                               options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        yield channel


def grpc_predict(server: ServerProcess, model: str = "half_plus_two") -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    with fresh_channel(server) as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30)
    return list(reply.outputs["y"].float_val)


def rest_predict(server: ServerProcess, model: str = "half_plus_two") -> tuple[int, Any]:
    reply = post(server.rest_port, f"/v1/models/{model}:predict", {"instances": [1.0]})
    return reply.status, reply.json()


def reload(server: ServerProcess, models: dict[str, Path]) -> None:
    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models.items():
        config.model_config_list.config.add(name=name, base_path=str(base_path),
                                            model_platform="tensorflow")
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Merge(text_format.MessageToString(config), request.config)
    with fresh_channel(server) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            request, timeout=60)
    assert response.status.error_code == 0


def scrape(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = get(server.rest_port, METRICS_PATH)
    assert reply.status == 200, reply.body
    samples = {}
    for line in reply.body.decode().splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            samples[(match["name"], labels)] = float(match["value"])
    return samples


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def served(access_log: Path, count: int) -> list[dict[str, Any]]:
    """The access log's lines, once it holds `count` (it is flushed every second)."""

    def lines() -> list[dict[str, Any]]:
        text = access_log.read_text() if access_log.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    return waiting.wait_for(lines, until=lambda found: len(found) >= count, timeout_seconds=30,
                            message=f"{count} lines in the access log")


# -- the worker processes -----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name; None once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    return _stat(pid) is not None


def worker_pids(server: ServerProcess) -> list[int]:
    return waiting.wait_for(lambda: children(server.process.pid),
                            until=lambda pids: len(pids) == 2, timeout_seconds=30,
                            message="the server's two worker processes")


# -- one server for the read-only tests ---------------------------------------------------------


@dataclasses.dataclass
class Workers:
    server: ServerProcess
    access_log: Path


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, exported_models: Path,
            start_module_server: Callable[..., ServerProcess]) -> Workers:
    folder = tmp_path_factory.mktemp("workers")
    monitoring = folder / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
    access_log = folder / "access.jsonl"
    server = start_module_server("--model_name=half_plus_two",
                                 f"--model_base_path={exported_models / 'half_plus_two'}",
                                 WORKERS, f"--monitoring_config_file={monitoring}",
                                 f"--access_log_file={access_log}")
    return Workers(server, access_log)


def test_both_workers_answer_rest_and_grpc_predicts(workers: Workers) -> None:
    before = len(served(workers.access_log, 0))
    for _ in range(CONNECTIONS):
        assert rest_predict(workers.server) == (200, {"predictions": [2.5]})
        assert grpc_predict(workers.server) == [2.5]
    lines = served(workers.access_log, before + 2 * CONNECTIONS)[before:]
    assert {line["status"] for line in lines} == {"OK"}
    by_worker = collections.Counter((line["entrypoint"], line["worker"]) for line in lines)
    assert set(by_worker) == {("REST", 0), ("REST", 1), ("GRPC", 0), ("GRPC", 1)}, by_worker


def test_the_metrics_are_one_view_summed_over_the_workers(workers: Workers) -> None:
    server = workers.server

    def counted(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
        return sample(samples, REQUEST_COUNT, model_name="half_plus_two", status="OK")

    logged = len(served(workers.access_log, 0))
    before = scrape(server)
    for _ in range(CONNECTIONS // 2):
        assert rest_predict(server)[0] == 200
        assert grpc_predict(server) == [2.5]
    expected = counted(before) + CONNECTIONS
    waiting.wait_for(lambda: counted(scrape(server)), until=lambda count: count == expected,
                     timeout_seconds=30, message=f"request_count at {expected}")
    # Each scrape is a new connection, answered by either worker: every answer is the sum.
    scrapes = [scrape(server) for _ in range(10)]
    assert {counted(samples) for samples in scrapes} == {expected}
    latency = ":tensorflow:serving:request_latency_count"
    for api, entrypoint in (("predict", "REST"), ("Predict", "GRPC")):
        labels = {"model_name": "half_plus_two", "API": api, "entrypoint": entrypoint}
        assert sample(scrapes[0], latency, **labels) - sample(before, latency, **labels) == \
            CONNECTIONS // 2
    # A version's state is what every worker has reached, not a sum; each worker loaded it.
    assert sample(scrapes[0], ":berth:serving:model_version_state", model_name="half_plus_two",
                  version="123") == 30
    assert sample(scrapes[0], ":berth:serving:model_load_latency_count",
                  model_name="half_plus_two", status="OK") == 2
    lines = served(workers.access_log, logged + CONNECTIONS)[logged:]
    assert {line["worker"] for line in lines} == {0, 1}  # both workers' requests were counted


def test_status_and_readiness_answer_the_same_from_either_worker(workers: Workers) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    for _ in range(10):
        with fresh_channel(workers.server) as channel:
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                request, timeout=30)
        assert [(v.version, v.state) for v in status.model_version_status] == [(123, 30)]
        rest_status = get(workers.server.rest_port, "/v1/models/half_plus_two").json()
        assert [v["state"] for v in rest_status["model_version_status"]] == ["AVAILABLE"]
        ready = get(workers.server.rest_port, "/readyz")
        assert ready.status == 200
        assert ready.json()["models"] == {"half_plus_two": {"available_versions": ["123"]}}


# -- life cycle ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcomes:
    ok: list[float] = dataclasses.field(default_factory=list)
    not_accepted: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def ask_once(server: ServerProcess, transport: str) -> str | None:
    """Predict on the busy model over a new connection: None when answered, "not accepted"
    when refused or closed before any answer, else what went wrong."""
    try:
        if transport == "rest":
            reply = post(server.rest_port, "/v1/models/busy:predict", {"instances": [1.0, 2.0]})
            return None if reply.status == 200 else f"REST {reply.status} {reply.body[:200]!r}"
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "busy"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
        with fresh_channel(server) as channel:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                              timeout=30)
        return None
    except (OSError, http.client.HTTPException):
        return "not accepted"
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            return "not accepted"
        return f"gRPC {error.code().name} {error.details()}"


def keep_asking(server: ServerProcess, transport: str, outcomes: Outcomes,
                stop: threading.Event) -> None:
    while not stop.is_set():
        outcome = ask_once(server, transport)
        with outcomes.lock:
            if outcome is None:
                outcomes.ok.append(time.monotonic())
            elif outcome == "not accepted":
                outcomes.not_accepted += 1
            else:
                outcomes.failures.append(outcome)


def test_sigterm_drains_every_worker_and_the_server_exits_0(
        tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    export_models.export_busy_model(tmp_path / "busy")
    access_log = tmp_path / "access.jsonl"
    server = start_server(f"--model_base_path={tmp_path / 'busy'}", "--model_name=busy",
                          WORKERS, "--shutdown_grace_period_seconds=20",
                          f"--access_log_file={access_log}")
    outcomes, stop = Outcomes(), threading.Event()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        clients = [pool.submit(keep_asking, server, transport, outcomes, stop)
                   for transport in ("rest", "grpc") for _ in range(8)]
        waiting.wait_for(lambda: len(outcomes.ok), until=lambda count: count > CONNECTIONS,
                         timeout_seconds=120, message=f"more than {CONNECTIONS} answers")
        terminated_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(timeout=60)
        stop.set()
        for client in clients:
            client.result()

    assert exit_code == 0, server.log_tail()
    assert outcomes.failures == [], outcomes.failures[:10]
    assert [t for t in outcomes.ok if t > terminated_at], "no in-flight request was let finish"
    log = server.log()
    for index in (0, 1):
        assert f"w{index} berth_server] Shutting down: finishing in-flight requests" in log
    lines = [json.loads(line) for line in access_log.read_text().splitlines()]
    assert {line["status"] for line in lines} == {"OK"}
    assert len(lines) == len(outcomes.ok)  # every request a worker took was answered
    assert {line["worker"] for line in lines} == {0, 1}


def test_a_worker_that_dies_stops_the_other_and_the_server_exits_1(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server("--model_name=half_plus_two",
                          f"--model_base_path={exported_models / 'half_plus_two'}", WORKERS)
    killed, other = worker_pids(server)
    os.kill(killed, signal.SIGKILL)
    assert server.process.wait(timeout=60) == 1
    log = server.log()
    assert f"(pid {killed}) was killed by SIGKILL; stopping the other workers" in log
    assert "berth_server] Shutting down: finishing in-flight requests" in log
    assert not alive(other)


def test_no_worker_outlives_a_killed_supervisor(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server("--model_name=half_plus_two",
                          f"--model_base_path={exported_models / 'half_plus_two'}", WORKERS)
    pids = worker_pids(server)
    server.process.kill()
    server.process.wait()
    waiting.wait_for(lambda: [pid for pid in pids if alive(pid)], until=lambda left: not left,
                     timeout_seconds=60, message="both workers to exit")
    for index in (0, 1):
        assert f"w{index} berth_server] Shutting down: finishing in-flight requests" in \
            server.log()


def test_a_reload_by_grpc_reaches_every_worker_whichever_receives_it(
        tmp_path: Path, exported_models: Path,
        start_server: Callable[..., ServerProcess]) -> None:
    two = {"half_plus_two": exported_models / "half_plus_two"}
    both = {**two, "half_plus_three": exported_models / "half_plus_three"}
    access_log = tmp_path / "access.jsonl"
    server = start_server("--model_name=half_plus_two",
                          f"--model_base_path={two['half_plus_two']}", WORKERS,
                          f"--access_log_file={access_log}")

    def received_by_both() -> bool:
        log = server.log()
        passed = log.count("w1 berth_server.service.worker_view] Passing a config reload")
        return 0 < passed < log.count("Applying a config reload to all 2 workers")

    answered = 0
    for _ in range(16):  # each reload reaches a worker at random; both paths, at last
        reload(server, both)
        answered += CONNECTIONS // 2
        # No waiting after the call: every worker serves the new model already.
        for _ in range(CONNECTIONS // 2):
            assert rest_predict(server, "half_plus_three") == (200, {"predictions": [3.5]})
        reload(server, two)
        waiting.wait_for(lambda: {rest_predict(server, "half_plus_three")[0]
                                  for _ in range(CONNECTIONS // 2)},
                         until=lambda statuses: statuses == {404}, timeout_seconds=60,
                         message="half_plus_three unloaded from every worker")
        if received_by_both():
            break
    assert received_by_both(), server.log_tail()

    def answers() -> list[int]:
        return [line["worker"] for line in served(access_log, 0)
                if line["model"] == "half_plus_three" and line["status"] == "OK"]

    workers = waiting.wait_for(answers, until=lambda found: len(found) == answered,
                               timeout_seconds=30, message=f"{answered} answers logged")
    assert set(workers) == {0, 1}


def test_a_refused_reload_keeps_the_running_config_in_every_worker(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server("--model_name=half_plus_two",
                          f"--model_base_path={exported_models / 'half_plus_two'}", WORKERS)
    for _ in range(4):
        with pytest.raises(grpc.RpcError) as raised:
            reload(server, {"half_plus_two": Path("relative/path")})
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    for _ in range(CONNECTIONS // 2):
        assert rest_predict(server) == (200, {"predictions": [2.5]})


# -- startup ------------------------------------------------------------------------------------


def run_to_exit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "berth_server", *args], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.parametrize("value, message", [
    ("-1", "Failed to start server. Error: INVALID_ARGUMENT: --num_workers must be >= 0 "
           "(0: one worker per usable CPU)"),
    ("two", "Illegal value 'two' specified for int flag 'num_workers'"),
    ("1.5", "Illegal value '1.5' specified for int flag 'num_workers'"),
])
def test_a_bad_number_of_workers_is_refused_at_start(value: str, message: str) -> None:
    result = run_to_exit("--model_base_path=/models/m", f"--num_workers={value}")
    assert result.returncode == 1
    assert result.stderr == message + "\n"


def test_a_port_another_server_shares_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a worker's port is
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit("--model_base_path=/models/m", WORKERS,
                             f"--port={processes.free_port()}", f"--rest_api_port={port}")
    assert result.returncode == 1
    assert (f"Failed to start server. Error: UNAVAILABLE: Failed to bind to address "
            f"0.0.0.0:{port}: Address already in use") in result.stderr
    assert "Started worker" not in result.stderr


def test_a_worker_that_cannot_load_fails_the_server_with_its_error(tmp_path: Path,
                                                                  exported_models: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported_models / "half_plus_three", broken)
    (broken / "123" / "saved_model.pb").write_bytes(b"not a SavedModel")
    result = run_to_exit("--model_name=broken", f"--model_base_path={broken}", WORKERS,
                         f"--port={processes.free_port()}", "--max_num_load_retries=0")
    assert result.returncode == 1
    assert "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available" in \
        result.stderr
    assert "stopping the other workers" in result.stderr


def test_one_worker_is_the_single_process_server(
        tmp_path: Path, exported_models: Path,
        start_server: Callable[..., ServerProcess]) -> None:
    access_log = tmp_path / "access.jsonl"
    server = start_server("--model_name=half_plus_two", "--num_workers=1",
                          f"--model_base_path={exported_models / 'half_plus_two'}",
                          f"--access_log_file={access_log}")
    assert rest_predict(server) == (200, {"predictions": [2.5]})
    assert children(server.process.pid) == []
    assert "worker" not in served(access_log, 1)[0]
