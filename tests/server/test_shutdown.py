"""SIGTERM under load: stop accepting, finish every accepted request, exit within the grace.

"Accepted" means a handler started on it. What the clients may see for the others: a refused or
closed connection (REST), UNAVAILABLE (gRPC), or CANCELLED for gRPC calls that had arrived but
that no handler had picked up when the server stopped (grpc/grpc#41785: grpc.aio cancels them
instead of refusing them). The access log, written by the handlers, tells the two apart: every
line in it must be OK and match one OK answer seen by a client.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import tensorflow as tf
import waiting
from tensorflow_serving.apis import predict_pb2

from examples import export_models

if TYPE_CHECKING:
    from conftest import ServerProcess

# A request that reached no handler: the connection was refused or closed before any answer.
NOT_ACCEPTED_ERRORS = (ConnectionError, http.client.RemoteDisconnected,
                       http.client.BadStatusLine, OSError)


@dataclasses.dataclass
class Outcomes:
    ok_finish_times: list[float] = dataclasses.field(default_factory=list)
    not_accepted: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def ok(self) -> None:
        with self.lock:
            self.ok_finish_times.append(time.monotonic())


def rest_client(port: int, outcomes: Outcomes, stop: threading.Event) -> None:
    body = json.dumps({"instances": [1.0, 2.0]})
    connection: http.client.HTTPConnection | None = None
    while not stop.is_set():
        try:
            connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/v1/models/busy:predict", body=body)
            response = connection.getresponse()
            payload = response.read()
        except NOT_ACCEPTED_ERRORS:
            with outcomes.lock:
                outcomes.not_accepted += 1
            if connection is not None:
                connection.close()
            connection = None
            time.sleep(0.01)
            continue
        if response.status == 200:
            outcomes.ok()
        else:
            with outcomes.lock:
                outcomes.failures.append(f"REST {response.status} {payload[:200]!r}")
        if response.getheader("connection", "").lower() == "close":
            connection.close()
            connection = None
    if connection is not None:
        connection.close()


def grpc_client(port: int, outcomes: Outcomes, stop: threading.Event) -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "busy"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones(2, np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub_call = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=predict_pb2.PredictRequest.SerializeToString,
            response_deserializer=predict_pb2.PredictResponse.FromString)
        while not stop.is_set():
            try:
                stub_call(request, timeout=30)
            except grpc.RpcError as error:
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    with outcomes.lock:
                        outcomes.not_accepted += 1
                    time.sleep(0.01)
                else:
                    with outcomes.lock:
                        outcomes.failures.append(f"gRPC {error.code().name} {error.details()}")
                continue
            outcomes.ok()


def test_sigterm_under_load_fails_no_accepted_request(
        tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    export_models.export_busy_model(tmp_path / "busy")
    access_log = tmp_path / "access.jsonl"
    server = start_server(f"--model_base_path={tmp_path / 'busy'}", "--model_name=busy",
                          "--shutdown_grace_period_seconds=20", f"--access_log_file={access_log}")
    outcomes, stop = Outcomes(), threading.Event()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        clients = [pool.submit(rest_client, server.rest_port, outcomes, stop) for _ in range(8)]
        clients += [pool.submit(grpc_client, server.grpc_port, outcomes, stop) for _ in range(8)]
        served_before = waiting.wait_for(lambda: len(outcomes.ok_finish_times),
                                         until=lambda served: served > 10, timeout_seconds=120,
                                         message="more than 10 answers before SIGTERM")
        terminated_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(timeout=40)
        exited_at = time.monotonic()
        time.sleep(0.5)
        stop.set()
        for client in clients:
            client.result()

    assert outcomes.failures == [], outcomes.failures[:10]
    assert exit_code == 0, server.log()[-3000:]
    assert served_before > 10
    finished_after_signal = [t for t in outcomes.ok_finish_times if t > terminated_at]
    assert finished_after_signal, "no in-flight request was let finish"
    assert exited_at - terminated_at < 25
    assert "Shutting down: finishing in-flight requests" in server.log()
    handled = [json.loads(line)["status"] for line in access_log.read_text().splitlines()]
    assert set(handled) == {"OK"}
    assert len(handled) == len(outcomes.ok_finish_times)
