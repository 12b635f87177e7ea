"""What cheap hostile inputs cost the server: its RSS, and the stall other clients see.

    python -m bench.hardening [--json]

Starts `berth-server` with the example half_plus_two and `--max_request_size_bytes=72 MiB` (so
a 64 MB request is served and an 80 MB gzip inflation is not), then for each case of the
hardening issue: a small gRPC predict loops back to back on its own channel (the other client)
while the case runs; the case's row gives the server's peak RSS growth over its RSS before, the
growth still held after, and the other client's p99 and worst latency during the case against
its p99 before. tests/server/test_hardening.py and test_rest_connections.py check the
behaviour; these are the costs, which depend on the machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bench import servers
from examples import export_models

MIB = 2**20
REQUEST_LIMIT = 72 * MIB
PREDICT = "/v1/models/half_plus_two:predict"


class _OtherClient:
    """Small gRPC predicts back to back; latencies and the server's RSS while it runs."""

    def __init__(self, port: int, server: servers.Server) -> None:
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._request = _predict(np.array([[1.0]], np.float32))
        self._server = server

    def call(self) -> float:
        started = time.perf_counter()
        self._stub.Predict(self._request, timeout=120)
        return time.perf_counter() - started

    @contextmanager
    def running(self) -> Iterator[dict[str, list[float]]]:
        seen: dict[str, list[float]] = {"latency": [], "rss": []}
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                seen["latency"].append(self.call())
                seen["rss"].append(self._server.rss_bytes)

        thread = threading.Thread(target=loop)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join()

    def close(self) -> None:
        self._channel.close()


def _predict(array: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(array))
    return request


def _rest(port: int, body: bytes, headers: dict[str, str] | None = None,
          path: str = PREDICT) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=300) as client:
        head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        client.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       f"Content-Length: {len(body)}\r\n{head}\r\n".encode() + body)
        received = b""
        while chunk := client.recv(1 << 20):
            received += chunk
    return int(received.split(b" ", 2)[1])


def _fill_attack(grpc_port: int) -> str:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    x = request.inputs["x"]
    x.dtype = tf.float32.as_datatype_enum
    x.tensor_shape.dim.add(size=1 << 26)
    x.float_val.append(1.0)
    return _grpc_status(grpc_port, request)


def _junk_inputs(grpc_port: int) -> str:
    request = _predict(np.array([[1.0]], np.float32))
    for index in range(4):
        junk = request.inputs[f"junk{index}"]
        junk.dtype = tf.float32.as_datatype_enum
        junk.tensor_shape.dim.add(size=1 << 26)
        junk.float_val.append(1.0)
    return _grpc_status(grpc_port, request)


def _grpc_status(grpc_port: int, request: predict_pb2.PredictRequest) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[
            ("grpc.max_receive_message_length", -1)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=300)
        except grpc.RpcError as error:
            return str(error.code().name)
    return "OK"


def _large_grpc(grpc_port: int) -> str:
    return _grpc_status(grpc_port, _predict(np.ones((16 * MIB, 1), np.float32)))


def _large_rest(rest_port: int) -> str:
    rows = 6 * MIB  # "[1.5]," per row: 6 bytes
    body = b'{"instances": [' + b"[1.5]," * (rows - 1) + b"[1.5]]}"
    return f"HTTP {_rest(rest_port, body)}"


def _error_echo(rest_port: int) -> str:
    body = orjson.dumps({"signature_name": 1, "instances": [[1.0]] * 1_700_000})
    return f"HTTP {_rest(rest_port, body)}"


def _gzip_bomb(rest_port: int) -> str:
    body = gzip.compress(b" " * (80 * MIB), 9)
    return f"HTTP {_rest(rest_port, body, {'Content-Encoding': 'gzip'})}"


def _unfinished_headers(rest_port: int) -> str:
    statuses = []
    with ExitStack() as stack:
        for _ in range(5):
            client = stack.enter_context(socket.create_connection(("127.0.0.1", rest_port),
                                                                  timeout=60))
            client.sendall(b"GET /healthz HTTP/1.1\r\nX-Pad: ")
            try:
                for _ in range(50):
                    client.sendall(b"a" * MIB)
            except OSError:
                pass
            statuses.append(_status_or_held(client))
    return ", ".join(statuses)


def _status_or_held(client: socket.socket) -> str:
    """The status the server answered on `client`, or "held" if it answered nothing."""
    client.settimeout(2.0)
    try:
        return client.recv(64).split(b" ", 2)[1].decode()
    except (OSError, IndexError):
        return "held"


def _slowloris(rest_port: int) -> str:
    with ExitStack() as stack:
        for _ in range(200):
            client = stack.enter_context(socket.create_connection(("127.0.0.1", rest_port)))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(2.0)  # held open: what 200 of them cost while the header deadline runs
    return "200 held 2 s"


def _unfinished_bodies(rest_port: int) -> str:
    """Five bodies of 60 MB, each under the size limit, all one byte short of complete."""
    with ExitStack() as stack:
        clients = []
        for _ in range(5):
            client = stack.enter_context(socket.create_connection(("127.0.0.1", rest_port),
                                                                  timeout=60))
            client.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           f"Content-Length: {60 * MIB}\r\n\r\n".encode())
            try:
                for _ in range(59):
                    client.sendall(b" " * MIB)
                client.sendall(b" " * (MIB - 1))
            except OSError:
                pass
            clients.append(client)
        return ", ".join(_status_or_held(client) for client in clients)


def _model_names_rest(rest_port: int) -> str:
    for index in range(2000):
        _rest(rest_port, b'{"instances": [1.0]}', path=f"/v1/models/{index:05d}{'n' * 30_000}"
              ":predict")
    return "2,000 sent"


def _model_names_grpc(grpc_port: int) -> str:
    for index in range(5):
        request = _predict(np.array([[1.0]], np.float32))
        request.model_spec.name = f"{index}" + "n" * (40 * MIB)
        _grpc_status(grpc_port, request)
    return "5 sent"


CASES: list[tuple[str, str, Callable[[int], str]]] = [
    ("1. gRPC fill: 41 bytes asking for [2^26] floats", "grpc", _fill_attack),
    ("1. gRPC: 4 junk inputs of [2^26] beside a valid one", "grpc", _junk_inputs),
    ("1. gRPC: one 64 MB predict (served)", "grpc", _large_grpc),
    ("1. REST: one 38 MB JSON predict (served)", "rest", _large_rest),
    ("2. REST: 10 MB body, signature_name 1", "rest", _error_echo),
    ("3. REST: gzip 80 KB inflating to 80 MB", "rest", _gzip_bomb),
    ("4. REST: 5 x 50 MB unfinished headers", "rest", _unfinished_headers),
    ("4. REST: 200 slowloris connections", "rest", _slowloris),
    ("4. REST: 5 x 60 MB unfinished bodies", "rest", _unfinished_bodies),
    ("5. REST: 2,000 unknown 30 KB model names", "rest", _model_names_rest),
    ("5. gRPC: 5 unknown 40 MB model names", "grpc", _model_names_grpc),
]


def _quantile_ms(values: list[float], quantile: float) -> float:
    return sorted(values)[int(quantile * (len(values) - 1))] * 1e3


def measure(server: servers.Server) -> list[dict[str, Any]]:
    other = _OtherClient(server.grpc_port, server)
    try:
        rows = []
        for name, port_kind, case in CASES:
            with other.running() as before:
                time.sleep(1.0)  # a second of the other client alone: its p99 before
            rss_before = server.rss_bytes
            with other.running() as during:
                outcome = case(server.grpc_port if port_kind == "grpc" else server.rest_port)
            rows.append({
                "case": name, "outcome": outcome,
                "rss_peak_growth_mib": (max(during["rss"] or [rss_before]) - rss_before) / MIB,
                "rss_held_mib": (server.rss_bytes - rss_before) / MIB,
                "other_p99_before_ms": _quantile_ms(before["latency"], 0.99),
                "other_p99_during_ms": _quantile_ms(during["latency"] or [0.0], 0.99),
                "other_worst_during_ms": max(during["latency"] or [0.0]) * 1e3,
            })
            print(json.dumps(rows[-1]), file=sys.stderr)
        return rows
    finally:
        other.close()


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | outcome | RSS peak / held (MiB) | other client p99 before → during, "
             "worst (ms) |", "|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['outcome']} | +{row['rss_peak_growth_mib']:.0f} / "
            f"+{row['rss_held_mib']:.0f} | {row['other_p99_before_ms']:.1f} → "
            f"{row['other_p99_during_ms']:.1f}, {row['other_worst_during_ms']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--models-dir", type=Path, default=servers.ROOT / "build/bench/models")
    parser.add_argument("--logs-dir", type=Path, default=servers.ROOT / "build/bench/logs")
    args = parser.parse_args(argv)
    base = args.models_dir / "half_plus_two"
    if not base.exists():
        export_models.export_half_plus_two(base)
    grpc_port, rest_port = servers.free_port(), servers.free_port()
    command = servers.berth_command("half_plus_two", base, grpc_port, rest_port, None) + [
        f"--max_request_size_bytes={REQUEST_LIMIT}"]
    with servers.running("hardening", command, cpu=0, logs_dir=args.logs_dir,
                         grpc_port=grpc_port, rest_port=rest_port,
                         ready=servers.berth_available(rest_port, "half_plus_two")) as server:
        rows = measure(server)
    print(json.dumps(rows) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
