"""berth.serving.StreamingPredictionService on a real server with batching on: answers in order,
per-request errors, many concurrent streams, cancellation, and flat memory under a fast client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
import waiting
from tensorflow_serving.apis import predict_pb2

from berth_server.protos import streaming_pb2_grpc
from examples import streaming_client

if TYPE_CHECKING:
    from conftest import ServerProcess

BATCHING = """
max_batch_size { value: 64 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 2 }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    params = tmp_path_factory.mktemp("streaming") / "batching.config"
    params.write_text(BATCHING)
    return start_module_server(f"--model_config_file={exported_models / 'models.config'}",
                               "--enable_batching", f"--batching_parameters_file={params}")


def stub(server: ServerProcess) -> streaming_pb2_grpc.StreamingPredictionServiceStub:
    return streaming_pb2_grpc.StreamingPredictionServiceStub(server.channel)


def half_plus_two(values: list[float], model: str = "half_plus_two",
                  ) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values, dtype=tf.float32))
    return request


def y(answer: Any) -> list[float]:
    assert not answer.HasField("error"), answer.error
    return list(tf.make_ndarray(answer.predict_response.outputs["y"]).tolist())


def test_answers_come_in_request_order_under_batching(server: ServerProcess) -> None:
    sent = [[float(i)] * (i % 4 + 1) for i in range(400)]
    answers = list(stub(server).PredictStream(iter(map(half_plus_two, sent)), timeout=120))
    assert [a.index for a in answers] == list(range(400))
    assert [y(a) for a in answers] == [[0.5 * v + 2 for v in row] for row in sent]


def test_a_bad_request_gets_an_error_answer_and_the_stream_goes_on(
        server: ServerProcess) -> None:
    bad_dtype = half_plus_two([1.0])
    bad_dtype.inputs["x"].CopyFrom(tf.make_tensor_proto([1], dtype=tf.int32))
    too_big = half_plus_two([1.0] * 65)
    sent = [half_plus_two([1.0]), half_plus_two([1.0], model="no_such_model"), bad_dtype,
            too_big, half_plus_two([3.0])]
    answers = list(stub(server).PredictStream(iter(sent), timeout=60))
    assert [a.index for a in answers] == [0, 1, 2, 3, 4]
    assert y(answers[0]) == [2.5] and y(answers[4]) == [3.5]
    assert answers[1].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "no_such_model" in answers[1].error.message
    assert answers[2].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answers[3].error.message == "Task size 65 is larger than maximum batch size 64"


def test_many_concurrent_streams_each_get_exactly_their_own_answers(
        server: ServerProcess) -> None:
    def one(stream: int) -> None:
        sent = [[float(stream * 1000 + i)] for i in range(60)]
        model = "half_plus_two" if stream % 2 else "half_plus_three"
        offset = 2.0 if stream % 2 else 3.0
        answers = stub(server).PredictStream(
            iter([half_plus_two(v, model) for v in sent]), timeout=120)
        assert [y(a) for a in answers] == [[0.5 * row[0] + offset] for row in sent]

    with ThreadPoolExecutor(max_workers=32) as pool:
        for future in [pool.submit(one, s) for s in range(32)]:
            future.result()


def test_cancelling_a_stream_leaves_the_server_serving(server: ServerProcess) -> None:
    def endless() -> Iterator[predict_pb2.PredictRequest]:
        i = 0
        while True:
            yield half_plus_two([float(i)])
            i += 1

    call = stub(server).PredictStream(endless(), timeout=60)
    for _, answer in zip(range(20), call, strict=False):
        assert not answer.HasField("error")
    call.cancel()
    with pytest.raises(grpc.RpcError) as raised:
        for _ in call:
            pass
    assert raised.value.code() == grpc.StatusCode.CANCELLED
    reply = server.predict.Predict(half_plus_two([1.0]), timeout=30)
    assert tf.make_ndarray(reply.outputs["y"]).tolist() == [2.5]
    assert [y(a) for a in stub(server).PredictStream(iter([half_plus_two([2.0])]))] == [[3.0]]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def unchanged_for_a_second(read: Callable[[], int]) -> int | None:
    """`read()` if it is positive and the same after a second, else None."""
    before = read()
    time.sleep(1)
    return before if before and read() == before else None


def test_a_client_faster_than_the_server_is_held_back_and_memory_stays_flat(
        server: ServerProcess) -> None:
    """800 requests of 256 KiB (200 MiB in all) sent as fast as possible while the client reads
    nothing: the server reads only what it can work on, so the client stalls, not the server's
    memory."""
    request = half_plus_two([0.0])
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((1, 65536), dtype=np.float32)))
    total, pulled = 800, [0]

    def fast() -> Iterator[predict_pb2.PredictRequest]:
        for _ in range(total):
            pulled[0] += 1
            yield request

    pid = server.process.pid
    baseline = rss_bytes(pid)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        answers = stub(server).PredictStream(fast(), timeout=300)
        # Read nothing: the server must stop reading, so the client stalls. Stalled means no
        # request pulled for a whole second (or all of them pulled: the server read them all).
        stalled_at = waiting.wait_for(lambda: unchanged_for_a_second(lambda: pulled[0]),
                                      timeout_seconds=120, interval_seconds=0,
                                      message="the client to stall")
        count = 0
        for answer in answers:
            assert answer.index == count and not answer.HasField("error")
            count += 1
    finally:
        done.set()
        sampler.join()
    assert count == total
    assert stalled_at < total // 2, f"the client pushed {stalled_at} of {total} unread"
    assert peak[0] - baseline < 150 * 2**20, f"server grew by {(peak[0] - baseline) >> 20} MiB"


def test_the_example_client_streams_and_reports_a_per_request_error(
        server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert streaming_client.main([f"--server=127.0.0.1:{server.grpc_port}", "--count=4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "#0: y=[2.0] (version 123)"
    assert lines[2].startswith("#2: error NOT_FOUND:")
    assert len(lines) == 5
