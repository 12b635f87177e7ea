"""Limits: maximum request size on both transports, and bounded admission under overload.

Overload is tested with a model whose requests wait at a gate (gated_model): the test holds as
many requests as the server admits, checks what the next ones get, then lets the held ones
answer. How fast refusals are, how much is served at twice the capacity and whether memory stays
flat depend on the machine: `python -m bench.overload` measures them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gated_model
import grpc
import pytest
import tensorflow as tf
import waiting
from server_http import call, post
from tensorflow_serving.apis import predict_pb2

from berth_server import errors
from berth_server.observability import metrics
from berth_server.servables import inference
from berth_server.service import admission

if TYPE_CHECKING:
    from conftest import ServerProcess

LIMIT = 4096
MAX_INFLIGHT = 4
EXCESS = 8
GENEROUS_SECONDS = 120  # a client deadline no loaded machine reaches; the gate decides timing


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
        while runner.inflight < 2:  # both admitted and waiting in the model
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


def held_requests_and_excess(rest_port: int, send_held: Callable[[float], Any],
                             send_excess: Callable[[], Any], gate: Path,
                             ) -> tuple[list[Any], list[Any]]:
    """Hold MAX_INFLIGHT requests at the gate, send EXCESS more, then open the gate.

    Returns the held requests' results and the excess requests' results, in order. Every
    excess request is answered while the held ones still wait: an excess request that was
    queued instead of refused could not answer before the gate opens.
    """
    with concurrent.futures.ThreadPoolExecutor(MAX_INFLIGHT) as pool:
        held = [pool.submit(send_held, float(i)) for i in range(MAX_INFLIGHT)]
        try:
            waiting.wait_for(lambda: gated_model.in_flight(rest_port, "gated") == MAX_INFLIGHT,
                             timeout_seconds=120, message=f"{MAX_INFLIGHT} requests admitted")
            excess = [send_excess() for _ in range(EXCESS)]
            still_held = [not future.done() for future in held]
        finally:
            gated_model.open_gate(gate)  # a failure above must not leave the held ones hanging
        answers = [future.result() for future in held]
    assert all(still_held), "a held request answered before the gate opened"
    return answers, excess


@pytest.fixture
def gated(tmp_path: Path, start_server: Callable[..., ServerProcess],
          ) -> tuple[ServerProcess, Path]:
    """A server of the gated model admitting MAX_INFLIGHT requests, and the gate's path."""
    gate = tmp_path / "gate"
    gated_model.export_gated_model(tmp_path / "gated", gate)
    server = start_server(f"--model_base_path={tmp_path / 'gated'}", "--model_name=gated",
                          f"--max_inflight_requests={MAX_INFLIGHT}",
                          gated_model.monitoring_flag(tmp_path))
    return server, gate


def test_beyond_the_inflight_limit_grpc_requests_are_refused_and_admitted_ones_answer(
        gated: tuple[ServerProcess, Path]) -> None:
    """Overload is refused with UNAVAILABLE at once, never queued; what was admitted answers OK.

    (Speed under overload, served share and memory: `python -m bench.overload`.)
    """
    server, gate = gated

    def predict(value: float) -> list[float]:
        reply = server.predict.Predict(predict_request("gated", [value]), timeout=GENEROUS_SECONDS)
        return list(reply.outputs["y"].float_val)

    def excess() -> tuple[grpc.StatusCode, str]:
        try:
            predict(-1.0)
        except grpc.RpcError as error:
            return error.code(), error.details()
        return grpc.StatusCode.OK, ""

    answers, refusals = held_requests_and_excess(server.rest_port, predict, excess, gate)
    assert answers == [[float(i)] for i in range(MAX_INFLIGHT)]
    assert {code for code, _ in refusals} == {grpc.StatusCode.UNAVAILABLE}, refusals
    assert all("overloaded" in details for _, details in refusals), refusals
    assert predict(9.0) == [9.0]  # admitted again once the others have answered


def test_beyond_the_inflight_limit_rest_requests_get_503_and_admitted_ones_answer(
        gated: tuple[ServerProcess, Path]) -> None:
    server, gate = gated

    def predict(value: float) -> tuple[int, bytes]:
        reply = call(server.rest_port, "POST", "/v1/models/gated:predict",
                     {"instances": [value]}, timeout_seconds=GENEROUS_SECONDS)
        return reply.status, reply.body

    answers, refusals = held_requests_and_excess(server.rest_port, predict,
                                                 lambda: predict(-1.0), gate)
    assert [(status, json.loads(body)) for status, body in answers] == [
        (200, {"predictions": [float(i)]}) for i in range(MAX_INFLIGHT)]
    assert {status for status, _ in refusals} == {503}, refusals
    assert all(b"overloaded" in body for _, body in refusals), refusals
    assert predict(9.0)[0] == 200  # admitted again once the others have answered
