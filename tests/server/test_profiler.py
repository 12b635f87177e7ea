"""TensorFlow's profiler service on the gRPC port (`--enable_profiler`, on by default).

A capture as TensorBoard's "Capture profile" makes it (`tf.profiler.experimental.client.trace`
at the server's gRPC address) while requests run: the trace lands in the capture's logdir and
holds the session runs of those requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess


def model_flags(exported_models: Path) -> list[str]:
    return [f"--model_base_path={exported_models / 'half_plus_two'}", "--model_name=half_plus_two"]


@pytest.fixture
def requests_running(start_server: Callable[..., ServerProcess],
                     exported_models: Path) -> Iterator[ServerProcess]:
    """A server answering back-to-back predicts until the test ends."""
    server = start_server(*model_flags(exported_models))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    stop = threading.Event()
    answered: list[float] = []

    def send() -> None:
        while not stop.is_set():
            answered.append(server.predict.Predict(request, timeout=60).outputs["y"].float_val[0])

    sender = threading.Thread(target=send)
    sender.start()
    yield server
    stop.set()
    sender.join()
    assert answered and set(answered) == {2.5}


def test_a_capture_at_the_grpc_port_traces_the_requests_that_run(
        requests_running: ServerProcess, tmp_path: Path) -> None:
    tf.profiler.experimental.client.trace(f"grpc://127.0.0.1:{requests_running.grpc_port}",
                                          str(tmp_path), 1000)
    traces = list((tmp_path / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1
    assert b"SessionRun" in traces[0].read_bytes()  # a request's run, as the trace viewer shows


def test_without_the_profiler_its_service_is_unimplemented(
        start_server: Callable[..., ServerProcess], exported_models: Path) -> None:
    server = start_server(*model_flags(exported_models), "--enable_profiler=false")
    profile = server.channel.unary_unary("/tensorflow.ProfilerService/Profile")
    with pytest.raises(grpc.RpcError) as caught:
        profile(b"", timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
