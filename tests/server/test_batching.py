"""--enable_batching end to end: many concurrent clients over gRPC and REST each get exactly their
own answers while the server batches them; splitting, TF Serving's errors, a bad parameters file.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest
import tensorflow as tf
from server_http import get, post
from tensorflow_serving.apis import predict_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess

BATCHING = """
max_batch_size { value: 8 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 2 }
allowed_batch_sizes: [2, 4, 8]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "batching.config"
    path.write_text(text)
    return path


METRICS_PATH = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    work = tmp_path_factory.mktemp("batching")
    params = write(work, BATCHING)
    monitoring = work / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
    return start_module_server(f"--model_config_file={exported_models / 'models.config'}",
                               "--enable_batching", f"--batching_parameters_file={params}",
                               f"--monitoring_config_file={monitoring}")


def half_plus(model: str, values: list[float], version: int | None = None,
              ) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values, dtype=tf.float32))
    return request


def multi_io(rows: np.ndarray, factors: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "multi_io"
    request.inputs["a"].CopyFrom(tf.make_tensor_proto(rows))
    request.inputs["b"].CopyFrom(tf.make_tensor_proto(factors))
    return request


def one_client(server: ServerProcess, client: int) -> None:
    """A mix of models, versions, signatures and row counts; every answer must be its own."""
    rng = random.Random(client)
    for _ in range(15):
        kind = rng.randrange(4)
        rows = rng.randint(1, 3)
        values = [float(client * 100 + rng.randrange(100)) for _ in range(rows)]
        if kind == 0:
            reply = server.predict.Predict(half_plus("half_plus_two", values), timeout=60)
            assert tf.make_ndarray(reply.outputs["y"]).tolist() == [0.5 * v + 2 for v in values]
        elif kind == 1:
            version, offset = rng.choice([(123, 2.0), (124, 3.0)])
            reply = server.predict.Predict(half_plus("two_versions", values, version),
                                           timeout=60)
            assert tf.make_ndarray(reply.outputs["y"]).tolist() == [0.5 * v + offset
                                                                    for v in values]
            assert reply.model_spec.version.value == version
        elif kind == 2:
            a = np.array([[v, v + 1, v + 2] for v in values], dtype=np.float32)
            b = np.arange(1, rows + 1, dtype=np.int64)
            reply = server.predict.Predict(multi_io(a, b), timeout=60)
            np.testing.assert_allclose(tf.make_ndarray(reply.outputs["sum"]),
                                       a.sum(axis=1) + b)
            np.testing.assert_allclose(tf.make_ndarray(reply.outputs["scaled"]), a * b[:, None])
        else:
            reply_http = post(server.rest_port, "/v1/models/half_plus_three:predict",
                              {"instances": values})
            assert reply_http.status == 200, reply_http.body
            assert reply_http.json() == {"predictions": [0.5 * v + 3 for v in values]}


def test_many_concurrent_clients_each_get_exactly_their_own_answers(
        server: ServerProcess) -> None:
    with ThreadPoolExecutor(max_workers=48) as pool:
        for future in [pool.submit(one_client, server, client) for client in range(48)]:
            future.result()


def test_a_request_larger_than_max_batch_size_is_invalid_without_splitting(
        server: ServerProcess) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        server.predict.Predict(half_plus("half_plus_two", [1.0] * 9), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "Task size 9 is larger than maximum batch size 8"
    reply = post(server.rest_port, "/v1/models/half_plus_two:predict", {"instances": [1.0] * 9})
    assert reply.status == 400
    assert reply.error == "Task size 9 is larger than maximum batch size 8"


def test_inputs_with_different_0th_dimensions_are_invalid(server: ServerProcess) -> None:
    request = multi_io(np.ones((2, 3), dtype=np.float32), np.ones(3, dtype=np.int64))
    with pytest.raises(grpc.RpcError) as raised:
        server.predict.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must have equal 0th-dimension size" in raised.value.details()


def test_with_splitting_a_large_request_is_split_and_rejoined(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess],
        ) -> None:
    params = write(tmp_path, BATCHING.replace("allowed_batch_sizes: [2, 4, 8]", "")
                   + "enable_large_batch_splitting { value: true }\n"
                   + "max_execution_batch_size { value: 4 }\n")
    server = start_server(f"--model_config_file={exported_models / 'models.config'}",
                          "--enable_batching", f"--batching_parameters_file={params}")
    values = [float(v) for v in range(21)]
    reply = server.predict.Predict(half_plus("half_plus_two", values), timeout=30)
    assert tf.make_ndarray(reply.outputs["y"]).tolist() == [0.5 * v + 2 for v in values]


def test_enable_batching_without_a_file_uses_tf_servings_defaults(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_config_file={exported_models / 'models.config'}",
                          "--enable_batching")
    reply = server.predict.Predict(half_plus("half_plus_two", [1.0, 2.0, 5.0]), timeout=30)
    assert tf.make_ndarray(reply.outputs["y"]).tolist() == [2.5, 3.0, 4.5]


def test_an_invalid_batching_file_fails_startup_with_tf_servings_message(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess],
        ) -> None:
    params = write(tmp_path, "max_batch_size { value: 8 } allowed_batch_sizes: [2, 4]")
    server = start_server(f"--model_config_file={exported_models / 'models.config'}",
                          "--enable_batching", f"--batching_parameters_file={params}",
                          wait=False)
    assert server.process.wait(timeout=120) == 1
    assert ("Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
            "expected 8") in server.log()


def metric(server: ServerProcess, pattern: str) -> float:
    """The sum of the samples whose line matches `pattern` (a regex up to the value)."""
    text = get(server.rest_port, METRICS_PATH).body.decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern} (\S+)$", text, re.M))


def test_tf_servings_batching_metrics_move(server: ServerProcess) -> None:
    prefix = ":tensorflow:serving:batching_session:"
    runs = metric(server, prefix + "wrapped_run_count")
    server.predict.Predict(half_plus("half_plus_two", [1.0, 2.0, 3.0]), timeout=30)
    assert metric(server, prefix + "wrapped_run_count") == runs + 1
    assert metric(server, prefix + r'processed_batch_size_bucket\{le="4"\}') >= 1
    assert metric(server, prefix + r'padding_size_count\{execution_batch_size="4"\}') >= 1
    pool = r'\{thread_pool_name="batch_threads"\}'
    assert metric(server, prefix + "queuing_latency_count" + pool) >= 1


def test_per_model_batching_parameters_come_from_the_version_directory(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess],
        ) -> None:
    base = tmp_path / "small"
    version = Path(shutil.copytree(exported_models / "half_plus_two" / "123", base / "1"))
    (version / "batching_params.pbtxt").write_text("max_batch_size { value: 2 }")
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "small" base_path: "{base}" '
        'model_platform: "tensorflow" } config { name: "half_plus_three" '
        f'base_path: "{exported_models / "half_plus_three"}" model_platform: "tensorflow" }} }}')
    server = start_server(f"--model_config_file={config}", "--enable_batching",
                          f"--batching_parameters_file={write(tmp_path, BATCHING)}",
                          "--enable_per_model_batching_parameters")
    with pytest.raises(grpc.RpcError) as raised:
        server.predict.Predict(half_plus("small", [1.0, 2.0, 3.0]), timeout=30)
    assert raised.value.details() == "Task size 3 is larger than maximum batch size 2"
    reply = server.predict.Predict(half_plus("small", [1.0, 2.0]), timeout=30)
    assert tf.make_ndarray(reply.outputs["y"]).tolist() == [2.5, 3.0]
    reply = server.predict.Predict(half_plus("half_plus_three", [1.0, 2.0, 3.0]), timeout=30)
    assert tf.make_ndarray(reply.outputs["y"]).tolist() == [3.5, 4.0, 4.5]


def test_an_invalid_per_model_file_fails_that_versions_load(
        tmp_path: Path, exported_models: Path, start_server: Callable[..., ServerProcess],
        ) -> None:
    base = tmp_path / "broken"
    version = Path(shutil.copytree(exported_models / "half_plus_two" / "123", base / "1"))
    (version / "batching_params.pbtxt").write_text("max_batch_size { value: 0 }")
    server = start_server("--model_name=broken", f"--model_base_path={base}",
                          "--enable_batching", "--enable_per_model_batching_parameters",
                          "--max_num_load_retries=0", wait=False)
    assert server.process.wait(timeout=120) == 1
    assert "max_batch_size must be positive; was 0" in server.log()
