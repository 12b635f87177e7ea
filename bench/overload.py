"""Berth at twice its capacity: how fast the excess is refused, how much is still served, memory.

    python -m bench.overload [--seconds=5] [--json]

A worker of `python -m bench` (which runs it on the load core) and a command of its own. It
exports a model that is slow on purpose (`export_models.export_busy_model`: model time, not the
transport, is the bottleneck), starts `berth-server` on the server core with
`--max_inflight_requests=4` and an access log, and then, for gRPC and for REST: measures the
capacity with four closed-loop clients, sends open-loop load at twice that rate for `--seconds`,
records every answer's status and latency and the server's RSS every quarter second, and times
one request afterwards. The refusal latency is also read from the access log, as the server
measured it: on the client side a refused gRPC call also waits behind the other calls' 64 kB on
the shared connection. tests/server/test_limits.py checks only the behaviour (the excess refused
with UNAVAILABLE or 503, the admitted answered); `bench.targets` judges these numbers.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bench import report, servers, suite
from examples import export_models

MAX_INFLIGHT = 4
CAPACITY_SECONDS = 3.0
MIB = 2**20
Answer = concurrent.futures.Future[tuple[str, float]]  # (status, client latency in seconds)


class _Grpc:
    """Predict with a 64 kB request over one channel; a status name per answer."""

    def __init__(self, port: int) -> None:
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._request = predict_pb2.PredictRequest()
        self._request.model_spec.name = "busy"
        self._request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(16_000, np.float32)))

    def call(self) -> str:
        try:
            self._stub.Predict(self._request, timeout=60)
        except grpc.RpcError as error:
            return str(error.code().name)
        return "OK"

    def submit(self) -> Answer:
        answer: Answer = concurrent.futures.Future()
        sent = time.monotonic()

        def done(call: Any) -> None:
            error = call.exception()
            status = "OK" if error is None else str(error.code().name)
            answer.set_result((status, time.monotonic() - sent))

        self._stub.Predict.future(self._request, timeout=60).add_done_callback(done)
        return answer

    def close(self) -> None:
        self._channel.close()


class _Rest:
    """POST a small predict body, one connection per request, from a pool of 64 threads."""

    _STATUSES = {200: "OK", 503: "UNAVAILABLE"}

    def __init__(self, port: int) -> None:
        self._port = port
        self._pool = concurrent.futures.ThreadPoolExecutor(64)
        self._body = json.dumps({"instances": [1.0, 2.0]})

    def call(self) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=60)
        try:
            connection.request("POST", "/v1/models/busy:predict", body=self._body)
            response = connection.getresponse()
            response.read()
        except OSError as error:
            return type(error).__name__
        finally:
            connection.close()
        return self._STATUSES.get(response.status, f"HTTP {response.status}")

    def submit(self) -> Answer:
        sent = time.monotonic()
        return self._pool.submit(lambda: (self.call(), time.monotonic() - sent))

    def close(self) -> None:
        self._pool.shutdown()


def _closed_loop_rate(call: Callable[[], str], *, clients: int, seconds: float) -> float:
    """Answers per second that `clients` back-to-back callers get."""
    deadline = time.monotonic() + seconds

    def client() -> int:
        done = 0
        while time.monotonic() < deadline:
            call()
            done += 1
        return done

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(lambda _: client(), range(clients)))
    return done / (time.monotonic() - started)


def _ms(values: list[float], quantile: float) -> float | None:
    return sorted(values)[int(quantile * (len(values) - 1))] * 1e3 if values else None


def measure(transport: _Grpc | _Rest, server: servers.Server, seconds: float) -> dict[str, Any]:
    """Capacity, then open-loop load at twice it for `seconds`, then one more request."""
    for _ in range(3):
        transport.call()  # warm-up
    capacity = _closed_loop_rate(transport.call, clients=MAX_INFLIGHT, seconds=CAPACITY_SECONDS)
    rss_before, rss = server.rss_bytes, []
    answers: list[Answer] = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        if len(rss) < elapsed * 4:
            rss.append(server.rss_bytes)
        while len(answers) < int(elapsed * 2 * capacity) + 1:
            answers.append(transport.submit())
        time.sleep(0.002)
    results = [answer.result() for answer in answers]
    rss_after = server.rss_bytes
    recovery_started = time.monotonic()
    recovery_status = transport.call()
    latencies = collections.defaultdict(list)
    for status, latency in results:
        latencies[status].append(latency)
    return {
        "capacity_per_second": capacity, "sent": len(results),
        "statuses": {status: len(times) for status, times in sorted(latencies.items())},
        "served_share_of_capacity": len(latencies["OK"]) / (capacity * seconds),
        "ok_p50_ms": _ms(latencies["OK"], 0.5), "ok_p99_ms": _ms(latencies["OK"], 0.99),
        "client_refusal_p50_ms": _ms(latencies["UNAVAILABLE"], 0.5),
        "rss_growth_mib": (rss_after - rss_before) / MIB,
        "rss_growth_second_half_mib": (rss[-1] - rss[len(rss) // 2]) / MIB,
        "recovery_ms": (time.monotonic() - recovery_started) * 1e3,
        "recovery_status": recovery_status,
    }


def _server_refusal_p50_micros(access_log: Path, entrypoint: str) -> float | None:
    entries = [json.loads(line) for line in access_log.read_text().splitlines()]
    refusals = [e["latency_micros"] for e in entries
                if e["entrypoint"] == entrypoint and e["status"] == "UNAVAILABLE"]
    return statistics.median(refusals) if refusals else None


def run(models_dir: Path, logs_dir: Path, seconds: float) -> dict[str, Any]:
    base = models_dir / "busy"
    if not (base / "1").exists():
        export_models.export_busy_model(base)
    access_log = logs_dir / "overload.access.jsonl"
    access_log.unlink(missing_ok=True)
    grpc_port, rest_port = servers.free_port(), servers.free_port()
    command = servers.berth_command("busy", base, grpc_port, rest_port, None) + [
        f"--max_inflight_requests={MAX_INFLIGHT}", f"--access_log_file={access_log}"]
    results: dict[str, Any] = {"max_inflight_requests": MAX_INFLIGHT, "seconds": seconds}
    with servers.running("overload", command, cpu=suite.SERVER_CPU, logs_dir=logs_dir,
                         grpc_port=grpc_port, rest_port=rest_port,
                         ready=servers.berth_available(rest_port, "busy")) as server:
        for name, transport in (("grpc", _Grpc(grpc_port)), ("rest", _Rest(rest_port))):
            try:
                results[name] = measure(transport, server, seconds)
            finally:
                transport.close()
    for name, entrypoint in (("grpc", "GRPC"), ("rest", "REST")):  # flushed at shutdown
        results[name]["server_refusal_p50_micros"] = _server_refusal_p50_micros(
            access_log, entrypoint)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the 2x load")
    parser.add_argument("--json", action="store_true", help="print one JSON line (for the suite)")
    parser.add_argument("--models-dir", type=Path, default=servers.ROOT / "build/bench/models")
    parser.add_argument("--logs-dir", type=Path, default=servers.ROOT / "build/bench/logs")
    args = parser.parse_args(argv)
    args.logs_dir.mkdir(parents=True, exist_ok=True)
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {suite.LOAD_CPU})  # the load generator keeps to its core
    results = run(args.models_dir, args.logs_dir, args.seconds)
    print(json.dumps(results) if args.json else "\n".join(report.overload_table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
