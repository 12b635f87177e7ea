"""Limits: maximum request size on both transports, and bounded admission under overload."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import busy_model
import grpc
import numpy as np
import pytest
import tensorflow as tf
from server_http import post
from tensorflow_serving.apis import predict_pb2

from berth_server import errors
from berth_server.observability import metrics
from berth_server.servables import inference
from berth_server.service import admission

if TYPE_CHECKING:
    from conftest import ServerProcess

LIMIT = 4096


@pytest.fixture(scope="module")
def limited(exported_models: Path,
            start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                               "--model_name=half_plus_two", f"--max_request_size_bytes={LIMIT}")


def predict_request(model: str, rows: Any) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(rows, dtype=tf.float32))
    return request


def test_a_rest_body_over_the_limit_is_refused_with_413(limited: ServerProcess) -> None:
    body = '{"instances": [' + ",".join(["1.0"] * 2000) + "]}"
    reply = post(limited.rest_port, "/v1/models/half_plus_two:predict", body)
    assert reply.status == 413
    assert f"exceeds the maximum of {LIMIT} bytes" in reply.error
    assert post(limited.rest_port, "/v1/models/half_plus_two:predict",
                {"instances": [1.0]}).status == 200


def test_a_chunked_rest_body_over_the_limit_is_refused_with_413_too(limited: ServerProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", limited.rest_port, timeout=30)
    chunks = iter([b'{"instances": [' + b"1.0," * 1500, b"1.0]}"])
    connection.request("POST", "/v1/models/half_plus_two:predict", body=chunks,
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413  # as for a Content-Length over the limit
    assert b"exceeds the maximum" in response.read()
    connection.close()


def test_a_grpc_message_over_the_limit_is_resource_exhausted(limited: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        limited.predict.Predict(predict_request("half_plus_two", [[1.0]] * 2000), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    response = limited.predict.Predict(predict_request("half_plus_two", [[1.0]]), timeout=30)
    assert list(response.outputs["y"].float_val) == [2.5]


def test_admission_refuses_beyond_the_limit_at_once() -> None:
    release = asyncio.Event()

    async def slow(lease: Any, plan: inference.Plan, timeout_ms: int) -> inference.Outputs:
        await release.wait()
        return {}

    class FakeLease:
        name = "m"

    async def scenario() -> list[Any]:
        runner = admission.AdmissionRunner(slow, metrics.Metrics(), max_inflight=2)
        plan = inference.Plan("serving_default", {}, [])
        held = [asyncio.ensure_future(runner(FakeLease(), plan, 0))  # type: ignore[arg-type]
                for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(errors.ServingError) as caught:
            await runner(FakeLease(), plan, 0)  # type: ignore[arg-type]
        assert caught.value.code == errors.Code.UNAVAILABLE
        release.set()
        results = await asyncio.gather(*held)
        assert runner.inflight == 0
        await runner(FakeLease(), plan, 0)  # type: ignore[arg-type]  # admitted again
        return results

    assert asyncio.run(scenario()) == [{}, {}]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")




def measure_capacity(server: ServerProcess, request: predict_pb2.PredictRequest, *,
                     concurrency: int, duration_seconds: float = 3) -> float:
    """Requests per second served with `concurrency` clients in closed loop."""
    deadline = time.monotonic() + duration_seconds

    def client() -> int:
        served = 0
        while time.monotonic() < deadline:
            server.predict.Predict(request, timeout=60)
            served += 1
        return served

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        served = sum(pool.map(lambda _: client(), range(concurrency)))
    return served / (time.monotonic() - started)


def test_at_twice_capacity_the_excess_is_refused_fast_and_memory_stays_flat(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    """Open-loop load at 2x the measured capacity for 5 s.

    Refusal speed is measured inside the server (the access log's latency): on the client side
    a refused request also waits behind the others' megabytes on the shared connection.
    """
    access_log = tmp_path / "access.jsonl"
    busy_model.export_busy_model(tmp_path / "busy")
    server = start_server(f"--model_base_path={tmp_path / 'busy'}", "--model_name=busy",
                          "--max_inflight_requests=4", f"--access_log_file={access_log}")
    request = predict_request("busy", np.ones(16_000, dtype=np.float32))  # 64 kB
    for _ in range(3):
        server.predict.Predict(request, timeout=60)  # warm up
    capacity = measure_capacity(server, request, concurrency=4)
    rss_before = rss_bytes(server.process.pid)

    latencies: dict[grpc.StatusCode, list[float]] = {}
    pending: list[tuple[Any, float]] = []

    def done(future: Any, sent_at: float) -> None:
        exception = future.exception()
        code = grpc.StatusCode.OK if exception is None else exception.code()
        latencies.setdefault(code, []).append(time.monotonic() - sent_at)

    started, sent, rss_samples = time.monotonic(), 0, []
    while (now := time.monotonic()) - started < 6:
        if len(rss_samples) < (now - started) * 4:
            rss_samples.append(rss_bytes(server.process.pid))
        while sent < int((now - started) * 2 * capacity) + 1:
            sent_at = time.monotonic()
            future = server.predict.Predict.future(request, timeout=60)
            future.add_done_callback(lambda f, t=sent_at: done(f, t))
            pending.append((future, sent_at))
            sent += 1
        time.sleep(0.002)
    for future, _ in pending:
        future.exception()
    time.sleep(0.1)
    rss_after = rss_bytes(server.process.pid)

    assert set(latencies) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, latencies.keys()
    counts = {code.name: len(times) for code, times in latencies.items()}
    assert counts.get("UNAVAILABLE", 0) >= sent // 5, (capacity, sent, counts)
    time.sleep(1.5)  # the access log is flushed every second
    refusals = sorted(entry["latency_micros"] for entry in map(json.loads, access_log.read_text(
        ).splitlines()) if entry["status"] == "UNAVAILABLE")
    median_refusal_micros = refusals[len(refusals) // 2]
    assert median_refusal_micros < 20_000, f"median refusal {median_refusal_micros} µs"
    assert len(latencies[grpc.StatusCode.OK]) >= capacity * 6 * 0.4
    # Flat: after the first seconds (allocator arenas, gRPC buffers) memory stops growing,
    # where unbounded queueing would keep every excess request's 64 kB.
    late_growth = rss_samples[-1] - rss_samples[len(rss_samples) // 2]
    assert late_growth < 64 * 2**20, [f"{r / 2**20:.0f}" for r in [rss_before, *rss_samples]]
    assert rss_after - rss_before < 512 * 2**20
    started = time.monotonic()
    server.predict.Predict(request, timeout=60)  # recovers at once
    assert time.monotonic() - started < 5


def test_rest_at_twice_capacity_answers_the_excess_with_503_fast(
        tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    busy_model.export_busy_model(tmp_path / "busy")
    server = start_server(f"--model_base_path={tmp_path / 'busy'}", "--model_name=busy",
                          "--max_inflight_requests=4")
    body = json.dumps({"instances": [1.0, 2.0]})

    def one() -> tuple[int, float, bytes]:
        started = time.monotonic()
        reply = post(server.rest_port, "/v1/models/busy:predict", body)
        return reply.status, time.monotonic() - started, reply.body

    deadline = time.monotonic() + 3
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda _: sum(1 for _ in iter(
            lambda: time.monotonic() < deadline and one()[0] == 200, False)), range(4)))
    capacity = sum(counts) / 3
    results: list[concurrent.futures.Future[tuple[int, float, bytes]]] = []
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        started = time.monotonic()
        while (now := time.monotonic()) - started < 5:
            while len(results) < int((now - started) * 2 * capacity) + 1:
                results.append(pool.submit(one))
            time.sleep(0.002)
    answers = [future.result() for future in results]
    statuses = {status for status, _, _ in answers}
    assert statuses <= {200, 503}, statuses
    refused = sorted(seconds for status, seconds, _ in answers if status == 503)
    assert len(refused) >= len(answers) // 5, (capacity, len(answers), len(refused))
    assert all(b"overloaded" in body for status, _, body in answers if status == 503)
    assert refused[len(refused) // 2] < 1.0, refused[len(refused) // 2]
    assert one()[0] == 200  # recovers at once
