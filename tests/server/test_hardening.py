"""Cheap inputs that used to cost the server dearly or reach clients raw, against a real server.

Each test reproduces one case of a client (or a pod's life cycle) that the server must survive:
the answer is a clear error in TF Serving's codes, small, and costs no other client anything.
"""

from __future__ import annotations

import gzip
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import orjson
import pytest
import tensorflow as tf
import waiting
from server_http import call, get, post
from tensorflow_serving.apis import model_management_pb2, predict_pb2
from test_metrics import METRICS_PATH
from test_tls import make_pem, ssl_config

if TYPE_CHECKING:
    from conftest import ServerProcess

HPT = "/v1/models/half_plus_two"
JSON = {"Content-Type": "application/json"}


def test_a_signature_that_fails_to_build_is_a_tf_error_not_a_python_class(
        shared_server: ServerProcess) -> None:
    """A TF2 export's `__saved_model_init_op` signature has an output no callable can fetch."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two_tf2"
    request.model_spec.signature_name = "__saved_model_init_op"
    with pytest.raises(grpc.RpcError) as caught:
        shared_server.predict.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE  # TensorFlow's own code
    assert "<class" not in caught.value.details()
    assert "does not have output" in caught.value.details()
    reply = post(shared_server.rest_port, "/v1/models/half_plus_two_tf2:predict",
                 {"signature_name": "__saved_model_init_op", "inputs": {}})
    assert reply.status == 400 and "<class" not in reply.error


def test_junk_inputs_beside_a_valid_one_are_refused_before_any_is_decoded(
        shared_server: ServerProcess) -> None:
    """Four inputs the signature does not have, each a few bytes asking for a 512 MiB fill."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    for index in range(4):
        junk = request.inputs[f"junk{index}"]
        junk.dtype = tf.float32.as_datatype_enum
        junk.tensor_shape.dim.add(size=1 << 27)
        junk.float_val.append(1.0)
    assert request.ByteSize() < 200
    with pytest.raises(grpc.RpcError) as caught:
        shared_server.predict.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("input size does not match signature: 5!=1")


def filled(model: str, **rows: tuple[int, tf.DType]) -> predict_pb2.PredictRequest:
    """A request whose tensors each carry one value and ask TF to fill `rows` from it."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for name, (count, dtype) in rows.items():
        tensor = request.inputs[name]
        tensor.dtype = dtype.as_datatype_enum
        tensor.tensor_shape.dim.add(size=count)
        if name != "b":  # multi_io's b is a vector; x and a have rows of values
            tensor.tensor_shape.dim.add(size=3 if name == "a" else 1)
        (tensor.int64_val if dtype == tf.int64 else tensor.float_val).append(2)
    return request


def test_a_fill_may_grow_a_tensor_only_to_the_request_size_limit(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    """With --max_request_size_bytes, a few typed values cannot ask for more than a request
    carrying every value could hold: per tensor, and per request."""
    server = start_server(f"--model_config_file={exported_models / 'models.config'}",
                          f"--max_request_size_bytes={1 << 20}")
    with pytest.raises(grpc.RpcError) as caught:  # 4 MiB from a 30-byte request
        server.predict.Predict(filled("half_plus_two", x=(1 << 20, tf.float32)), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"a tensor over {1 << 20} bytes must carry its values" in caught.value.details()
    answer = server.predict.Predict(filled("half_plus_two", x=(1000, tf.float32)), timeout=30)
    assert list(answer.outputs["y"].float_val) == [3.0] * 1000

    # 480 KB and 640 KB: each under the limit, together over it.
    both = filled("multi_io", a=(40_000, tf.float32), b=(80_000, tf.int64))
    with pytest.raises(grpc.RpcError) as caught:
        server.predict.Predict(both, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "Unable to parse tensor proto: the request's tensors need 1120000 bytes filled from "
        f"fewer values than their shapes; a request over {1 << 20} bytes must carry its values")
    answer = server.predict.Predict(
        filled("multi_io", a=(40_000, tf.float32), b=(40_000, tf.int64)), timeout=30)
    assert len(answer.outputs) == 2


def test_an_error_about_a_10_mb_body_quotes_a_kilobyte_of_it(shared_server: ServerProcess) -> None:
    body = orjson.dumps({"signature_name": 1, "instances": [[1.0]] * 1_000_000})
    reply = post(shared_server.rest_port, f"{HPT}:predict", body)
    assert reply.status == 400
    assert reply.error.endswith("...TRUNCATED not formatted correctly. 'signature_name' key "
                                "must be a string value.")
    assert len(reply.body) < 2048
    assert post(shared_server.rest_port, f"{HPT}:predict",
                {"instances": [1.0]}).json() == {"predictions": [2.5]}


def test_an_integer_of_5000_digits_is_a_bad_request(shared_server: ServerProcess) -> None:
    reply = post(shared_server.rest_port, f"{HPT}:predict",
                 b'{"instances": [' + b"7" * 5000 + b"]}")
    assert reply.status == 400
    assert reply.error == "JSON Parse error: Number too big to be stored in double."


def test_a_gzip_body_that_inflates_past_the_size_limit_is_refused(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two", f"--max_request_size_bytes={1 << 20}")
    bomb = gzip.compress(b'{"instances": [' + b"1.0," * (20 << 20) + b"1.0]}")
    assert len(bomb) < 1 << 20
    reply = call(server.rest_port, "POST", f"{HPT}:predict", bomb,
                 headers={**JSON, "Content-Encoding": "gzip"})
    assert reply.status == 413
    assert reply.error == f"Decompressed request body exceeds the maximum of {1 << 20} bytes"
    small = gzip.compress(json.dumps({"instances": [1.0]}).encode())
    assert call(server.rest_port, "POST", f"{HPT}:predict", small,
                headers={**JSON, "Content-Encoding": "gzip"}).json() == {"predictions": [2.5]}


def test_made_up_model_names_do_not_become_metric_labels(
        tmp_path: Path, exported_models: Path,
        start_server: Callable[..., ServerProcess]) -> None:
    config = tmp_path / "monitoring.config"
    config.write_text(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two", f"--monitoring_config_file={config}")
    for index in range(50):
        assert post(server.rest_port, f"/v1/models/made-up-{index}:predict",
                    {"instances": [1.0]}).status == 404
        request = predict_pb2.PredictRequest()
        request.model_spec.name = f"grpc-made-up-{index}"
        with pytest.raises(grpc.RpcError):
            server.predict.Predict(request, timeout=30)
    assert post(server.rest_port, f"{HPT}:predict", {"instances": [1.0]}).status == 200
    text = get(server.rest_port, METRICS_PATH).body.decode()
    assert "made-up" not in text
    assert ':tensorflow:serving:request_count{model_name="",status="NOT_FOUND"} 100' in text
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"} 1' in text


def rss_mib(server: ServerProcess) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_a_refused_grpc_call_keeps_none_of_its_request(shared_server: ServerProcess) -> None:
    """grpc keeps an aborted call's exception, and with it every frame the exception passed:
    each refused 40 MB request used to stay in memory for good (about 200 MiB a call)."""
    def refused_call(index: int) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = f"{index}" + "n" * (40 << 20)
        with pytest.raises(grpc.RpcError) as caught:
            shared_server.predict.Predict(request, timeout=120)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert len(caught.value.details()) < 1100  # the name is cut, as every message is

    refused_call(0)
    after_first = rss_mib(shared_server)
    for index in range(1, 8):
        refused_call(index)
    assert rss_mib(shared_server) - after_first < 400  # seven leaked calls would be 1,400


def test_sigterm_ends_a_server_still_waiting_for_its_model(
        tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    """A version that never completes (no saved_model.pb) keeps startup waiting; Kubernetes
    sends SIGTERM to pods that are still starting, and the process must go."""
    (tmp_path / "m" / "1" / "variables").mkdir(parents=True)
    server = start_server(f"--model_base_path={tmp_path / 'm'}", "--model_name=m",
                          "--incomplete_version_wait_seconds=3600", wait=False)
    server.wait_for_log("not completely written", timeout_seconds=120)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    assert "Stopped while loading the models" in server.log()


def test_a_version_that_will_never_be_a_saved_model_fails_startup_once_it_settles(
        tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    """A version holding only an old SessionBundle is not half-written: once it has not
    changed for --incomplete_version_wait_seconds it is loaded, and fails."""
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "export.meta").write_bytes(b"\x0a\x00")
    server = start_server(f"--model_base_path={tmp_path / 'm'}", "--model_name=m",
                          "--incomplete_version_wait_seconds=1", "--max_num_load_retries=0",
                          wait=False)
    assert server.process.wait(timeout=120) == 1
    log = server.log()
    assert "Version 1 of model m is not a complete SavedModel" in log
    assert "Failed to start server" in log


def reload_request(*models: tuple[str, Path]) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    for name, base_path in models:
        entry = request.config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = name, str(base_path), "tensorflow"
    return request


def test_a_reload_to_a_base_path_that_does_not_exist_keeps_the_running_models(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two")
    with pytest.raises(grpc.RpcError) as caught:
        server.model_service.HandleReloadConfigRequest(
            reload_request(("other", Path("/nonexistent"))), timeout=60)
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert "Could not find base path /nonexistent for servable" in caught.value.details()
    assert get(server.rest_port, "/readyz").status == 200
    assert post(server.rest_port, f"{HPT}:predict", {"instances": [1.0]}).json() == {
        "predictions": [2.5]}
    assert get(server.rest_port, "/v1/models/other").status == 404


def test_a_reload_that_cannot_finish_within_its_deadline_changes_nothing(
        tmp_path: Path, exported_models: Path,
        start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two")
    (tmp_path / "empty").mkdir()  # no version will ever appear
    with pytest.raises(grpc.RpcError) as caught:
        server.model_service.HandleReloadConfigRequest(
            reload_request(("other", tmp_path / "empty")), timeout=3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    waiting.wait_for(lambda: get(server.rest_port, "/berth/v1/models").json()["models"],
                     until=lambda models: [m["name"] for m in models] == ["half_plus_two"],
                     timeout_seconds=60, message="the running config to be the only one")
    assert get(server.rest_port, "/readyz").status == 200


def test_the_reload_rpc_can_be_turned_off(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two", "--enable_reload_config_rpc=false")
    with pytest.raises(grpc.RpcError) as caught:
        server.model_service.HandleReloadConfigRequest(reload_request(), timeout=60)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert get(server.rest_port, "/readyz").status == 200


def test_the_rest_tls_key_leaves_the_disk_once_the_server_has_read_it(
        tmp_path: Path, exported_models: Path,
        start_server: Callable[..., ServerProcess]) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two",
                          f"--ssl_config_file={ssl_config(tmp_path / 's', make_pem())}",
                          "--rest_api_enable_ssl", env={"TMPDIR": str(temp)})
    waiting.wait_for(lambda: sorted(p.name for p in temp.rglob("*")), until=lambda left: not left,
                     timeout_seconds=60, message="the PEM files to be removed")
    assert server.process.poll() is None


def test_bind_address_keeps_both_ports_off_other_interfaces(
        exported_models: Path, start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(f"--model_base_path={exported_models / 'half_plus_two'}",
                          "--model_name=half_plus_two", "--bind_address=127.0.0.1")
    assert get(server.rest_port, f"{HPT}").status == 200
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], np.float32)))
    assert list(server.predict.Predict(request, timeout=30).outputs["y"].float_val) == [2.5]
    listening = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, v4-mapped in v6
    for port in (server.rest_port, server.grpc_port):
        local = [line.split()[1] for line in listening.splitlines()[1:]
                 if line.split()[3] == "0A" and line.split()[1].endswith(f":{port:04X}")]
        assert local and {address.split(":")[0] for address in local} <= loopback, (port, local)
