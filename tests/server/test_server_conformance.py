"""The server answers TF Serving's documented exchanges, over REST and over gRPC.

One server over every example model (two_versions with labels `stable` → 123 and `canary` → 124)
is shared by the whole module: these tests only read.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from server_http import get, post
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess

TF1_SIGNATURES = {"serving_default", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3",
                  "classify_x_to_y", "classify_x2_to_y3"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, exported_models: Path,
           start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    config = text_format.Parse((exported_models / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    for model in config.model_config_list.config:
        if model.name == "two_versions":
            model.version_labels["stable"] = 123
            model.version_labels["canary"] = 124
    work = tmp_path_factory.mktemp("conformance")
    config_path = work / "labelled.config"
    config_path.write_text(text_format.MessageToString(config))
    return start_module_server(f"--model_config_file={config_path}")


def example(**features: float) -> example_pb2.Example:
    return example_pb2.Example(features=feature_pb2.Features(feature={
        name: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[value]))
        for name, value in features.items()}))


def predict_request(model: str, signature: str = "",
                    **inputs: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


# -- REST predict --------------------------------------------------------------------------------

class TestRestPredict:
    def test_row_format_answers_the_documented_half_plus_two_exchange(
            self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:predict",
                     {"instances": [1.0, 2.0, 5.0]})
        assert reply.status == 200
        assert reply.json() == {"predictions": [2.5, 3.0, 4.5]}
        assert reply.headers["content-type"] == "application/json"

    def test_columnar_format_answers_with_outputs(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:predict",
                     {"inputs": [2.0, 3.0, 4.0]})
        assert reply.status == 200
        assert reply.json() == {"outputs": [3.0, 3.5, 4.0]}

    def test_whole_floats_are_written_with_a_decimal_point(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:predict",
                     {"instances": [2.0, 4.0]})
        assert b"3.0" in reply.body and b"4.0" in reply.body

    def test_half_plus_three_answers_the_documented_exchange(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_three:predict",
                     {"instances": [1.0, 2.0, 5.0]})
        assert reply.json() == {"predictions": [3.5, 4.0, 5.5]}

    def test_nested_instances_keep_their_shape(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/two_versions/versions/123:predict",
                     {"instances": [[1.0, 2.0], [3.0, 4.0]]})
        assert reply.json() == {"predictions": [[2.5, 3.0], [3.5, 4.0]]}

    def test_signature_name_in_the_body_selects_another_signature(
            self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:predict",
                     {"signature_name": "regress_x2_to_y3", "instances": [[1.0], [3.0]]})
        assert reply.json() == {"predictions": [[3.5], [4.5]]}

    def test_multi_input_rows_answer_one_object_per_row(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/multi_io:predict", {"instances": [
            {"a": [1.0, 2.0, 3.0], "b": 2}, {"a": [0.0, 0.0, 1.0], "b": 1}]})
        assert reply.status == 200, reply.body
        assert reply.json() == {"predictions": [
            {"sum": 8.0, "scaled": [2.0, 4.0, 6.0]}, {"sum": 2.0, "scaled": [0.0, 0.0, 1.0]}]}

    def test_multi_input_columns_answer_an_object_of_outputs(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/multi_io:predict",
                     {"inputs": {"a": [[1.0, 2.0, 3.0]], "b": [3]}})
        assert reply.json() == {"outputs": {"sum": [9.0], "scaled": [[3.0, 6.0, 9.0]]}}

    def test_string_outputs_named_bytes_are_base64_objects(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/string_model:predict", {"instances": [
            "ab", {"b64": base64.b64encode(b"xyz").decode()}]})
        assert reply.json() == {"predictions": [
            {"length": 2, "upper": "AB", "upper_bytes": {"b64": base64.b64encode(b"AB").decode()}},
            {"length": 3, "upper": "XYZ",
             "upper_bytes": {"b64": base64.b64encode(b"XYZ").decode()}}]}

    def test_tf2_model_predicts_with_its_native_signature(self, server: ServerProcess) -> None:
        assert post(server.rest_port, "/v1/models/half_plus_two_tf2:predict",
                    {"instances": [1.0]}).json() == {"predictions": [2.5]}
        assert post(server.rest_port, "/v1/models/half_plus_two_tf2:predict",
                    {"inputs": {"x": [4.0]}}).json() == {"outputs": [4.0]}


# -- REST versions and labels --------------------------------------------------------------------

class TestRestVersionsAndLabels:
    def test_no_version_in_the_url_means_the_latest(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/two_versions:predict", {"instances": [2.0]})
        assert reply.json() == {"predictions": [4.0]}  # version 124: 0.5x + 3

    def test_a_version_url_reaches_that_version(self, server: ServerProcess) -> None:
        low = post(server.rest_port, "/v1/models/two_versions/versions/123:predict",
                   {"instances": [2.0]})
        high = post(server.rest_port, "/v1/models/two_versions/versions/124:predict",
                    {"instances": [2.0]})
        assert (low.json(), high.json()) == ({"predictions": [3.0]}, {"predictions": [4.0]})

    def test_a_label_url_reaches_the_labelled_version(self, server: ServerProcess) -> None:
        stable = post(server.rest_port, "/v1/models/two_versions/labels/stable:predict",
                      {"instances": [2.0]})
        canary = post(server.rest_port, "/v1/models/two_versions/labels/canary:predict",
                      {"instances": [2.0]})
        assert (stable.json(), canary.json()) == ({"predictions": [3.0]}, {"predictions": [4.0]})

    def test_a_label_url_reaches_metadata_of_the_labelled_version(
            self, server: ServerProcess) -> None:
        reply = get(server.rest_port, "/v1/models/two_versions/labels/stable/metadata")
        assert reply.json()["model_spec"] == {"name": "two_versions", "signature_name": "",
                                              "version": "123"}

    def test_a_zero_padded_version_in_the_url_is_the_same_version(
            self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/two_versions/versions/000123:predict",
                     {"instances": [2.0]})
        assert reply.json() == {"predictions": [3.0]}


# -- REST classify and regress -------------------------------------------------------------------

class TestRestClassifyRegress:
    def test_classify_answers_results_with_an_empty_label(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:classify",
                     {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]})
        assert reply.status == 200
        assert reply.json() == {"results": [[["", 12.0]]]}

    def test_regress_answers_the_documented_exchange(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:regress",
                     {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]})
        assert reply.json() == {"results": [42.0]}

    def test_regress_answers_one_value_per_example_in_order(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:regress",
                     {"signature_name": "regress_x_to_y2",
                      "examples": [{"x": 2.0}, {"x": 4.0}, {"x": 6.0}]})
        assert reply.json() == {"results": [4.0, 5.0, 6.0]}

    def test_a_context_is_merged_into_every_example(self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two:regress",
                     {"signature_name": "regress_x_to_y", "context": {"x": 80.0},
                      "examples": [{"x2": 1.0}, {"x2": 2.0}]})
        assert reply.json() == {"results": [42.0, 42.0]}

    def test_tf2_signatures_classify_without_the_method_name_check(
            self, server: ServerProcess) -> None:
        reply = post(server.rest_port, "/v1/models/half_plus_two_tf2:classify",
                     {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})
        assert reply.json() == {"results": [[["", 3.0]]]}


# -- REST status and metadata --------------------------------------------------------------------

class TestRestStatusAndMetadata:
    def test_status_has_tf_servings_exact_json_shape(self, server: ServerProcess) -> None:
        reply = get(server.rest_port, "/v1/models/half_plus_two")
        assert reply.status == 200
        assert reply.json() == {"model_version_status": [
            {"version": "123", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}]}

    def test_status_lists_every_version_of_the_model(self, server: ServerProcess) -> None:
        versions = get(server.rest_port, "/v1/models/two_versions").json()["model_version_status"]
        assert [(v["version"], v["state"]) for v in versions] == [
            ("123", "AVAILABLE"), ("124", "AVAILABLE")]

    def test_status_of_one_version(self, server: ServerProcess) -> None:
        reply = get(server.rest_port, "/v1/models/two_versions/versions/124")
        assert [v["version"] for v in reply.json()["model_version_status"]] == ["124"]

    def test_metadata_nests_signature_def_twice_with_int64_as_strings(
            self, server: ServerProcess) -> None:
        reply = get(server.rest_port, "/v1/models/half_plus_two/metadata")
        assert reply.status == 200
        document = reply.json()
        assert document["model_spec"] == {"name": "half_plus_two", "signature_name": "",
                                          "version": "123"}
        signatures = document["metadata"]["signature_def"]["signature_def"]
        assert set(signatures) == TF1_SIGNATURES
        assert signatures["serving_default"] == {
            "inputs": {"x": {"dtype": "DT_FLOAT", "name": "x:0", "tensor_shape": {
                "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
                "unknown_rank": False}}},
            "outputs": {"y": {"dtype": "DT_FLOAT", "name": "y:0", "tensor_shape": {
                "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
                "unknown_rank": False}}},
            "method_name": "tensorflow/serving/predict",
            "defaults": {}}
        assert signatures["classify_x_to_y"]["method_name"] == "tensorflow/serving/classify"
        assert signatures["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"

    def test_tf2_metadata_has_the_init_op_and_only_predict_methods(
            self, server: ServerProcess) -> None:
        signatures = get(server.rest_port, "/v1/models/half_plus_two_tf2/metadata").json()[
            "metadata"]["signature_def"]["signature_def"]
        assert set(signatures) == TF1_SIGNATURES | {"__saved_model_init_op"}
        assert {s["method_name"] for k, s in signatures.items()
                if k != "__saved_model_init_op"} == {"tensorflow/serving/predict"}

    def test_metadata_of_a_given_version(self, server: ServerProcess) -> None:
        reply = get(server.rest_port, "/v1/models/two_versions/versions/123/metadata")
        assert reply.json()["model_spec"]["version"] == "123"


# -- gRPC PredictionService ----------------------------------------------------------------------

class TestGrpcPredict:
    def test_predict_answers_half_plus_two_with_the_resolved_model_spec(
            self, server: ServerProcess) -> None:
        response = server.predict.Predict(
            predict_request("half_plus_two", x=np.array([[1.0], [2.0], [5.0]], np.float32)),
            timeout=30)
        assert tf.make_ndarray(response.outputs["y"]).tolist() == [[2.5], [3.0], [4.5]]
        assert response.outputs["y"].float_val == [2.5, 3.0, 4.5]  # typed fields by default
        assert response.model_spec.name == "half_plus_two"
        assert response.model_spec.version.value == 123
        assert response.model_spec.signature_name == "serving_default"

    def test_tensor_content_inputs_from_make_tensor_proto_are_accepted(
            self, server: ServerProcess) -> None:
        request = predict_request("multi_io", a=np.array([[1, 2, 3], [4, 5, 6]], np.float32),
                                  b=np.array([1, 10], np.int64))
        assert request.inputs["a"].tensor_content  # numpy arrays travel as tensor_content
        response = server.predict.Predict(request, timeout=30)
        assert tf.make_ndarray(response.outputs["sum"]).tolist() == [7.0, 25.0]
        assert tf.make_ndarray(response.outputs["scaled"]).tolist() == [
            [1.0, 2.0, 3.0], [40.0, 50.0, 60.0]]

    def test_output_filter_returns_only_the_named_outputs(self, server: ServerProcess) -> None:
        request = predict_request("multi_io", a=np.ones((1, 3), np.float32),
                                  b=np.array([2], np.int64))
        request.output_filter.append("sum")
        response = server.predict.Predict(request, timeout=30)
        assert list(response.outputs) == ["sum"]

    def test_string_tensors_travel_as_bytes(self, server: ServerProcess) -> None:
        response = server.predict.Predict(
            predict_request("string_model", text=np.array([b"ab", b"c\xffd"], object)),
            timeout=30)
        assert list(response.outputs["upper_bytes"].string_val) == [b"AB", b"C\xffD"]
        assert response.outputs["length"].dtype == types_pb2.DT_INT32
        assert list(response.outputs["length"].int_val) == [2, 3]

    def test_a_label_in_the_model_spec_picks_the_labelled_version(
            self, server: ServerProcess) -> None:
        request = predict_request("two_versions", x=np.array([[2.0]], np.float32))
        request.model_spec.version_label = "stable"
        response = server.predict.Predict(request, timeout=30)
        assert response.model_spec.version.value == 123
        assert response.outputs["y"].float_val == [3.0]

    def test_a_version_in_the_model_spec_picks_that_version(self, server: ServerProcess) -> None:
        request = predict_request("two_versions", x=np.array([[2.0]], np.float32))
        request.model_spec.version.value = 124
        response = server.predict.Predict(request, timeout=30)
        assert response.outputs["y"].float_val == [4.0]

    def test_tf2_signature_defaults_fill_an_input_left_out(self, server: ServerProcess) -> None:
        response = server.predict.Predict(predict_request("half_plus_two_tf2"), timeout=30)
        assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.0]

    def test_grpc_and_rest_give_the_same_numbers(self, server: ServerProcess) -> None:
        values = [0.1, 1e7, -3.25]
        rest = post(server.rest_port, "/v1/models/half_plus_two:predict",
                    {"instances": values}).json()["predictions"]
        grpc_values = server.predict.Predict(
            predict_request("half_plus_two", x=np.array(values, np.float32)),
            timeout=30).outputs["y"].float_val
        assert rest == pytest.approx(list(grpc_values), rel=1e-7)


class TestGrpcClassifyRegress:
    def test_classify_answers_one_class_with_an_empty_label(self, server: ServerProcess) -> None:
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "classify_x_to_y"
        request.input.example_list.examples.append(example(x=20.0))
        response = server.predict.Classify(request, timeout=30)
        (classes,) = response.result.classifications
        assert [(c.label, c.score) for c in classes.classes] == [("", 12.0)]
        assert response.model_spec.version.value == 123
        assert response.model_spec.signature_name == "classify_x_to_y"

    def test_regress_answers_one_value_per_example(self, server: ServerProcess) -> None:
        request = regression_pb2.RegressionRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "regress_x_to_y"
        request.input.example_list.examples.extend([example(x=80.0), example(x=2.0)])
        response = server.predict.Regress(request, timeout=30)
        assert [r.value for r in response.result.regressions] == [42.0, 3.0]

    def test_regress_merges_the_context_into_each_example(self, server: ServerProcess) -> None:
        request = regression_pb2.RegressionRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "regress_x_to_y2"
        listed = request.input.example_list_with_context
        listed.context.CopyFrom(example(x=4.0))
        listed.examples.extend([example(x2=1.0), example(x2=9.0)])
        response = server.predict.Regress(request, timeout=30)
        assert [r.value for r in response.result.regressions] == [5.0, 5.0]

    def test_multi_inference_answers_every_task_in_order(self, server: ServerProcess) -> None:
        request = inference_pb2.MultiInferenceRequest()
        request.input.example_list.examples.append(example(x=2.0))
        for signature, method in (("regress_x_to_y2", "regress"), ("classify_x_to_y", "classify")):
            task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
            task.model_spec.name = "half_plus_two"
            task.model_spec.signature_name = signature
        response = server.predict.MultiInference(request, timeout=30)
        regress, classify = response.results
        assert regress.model_spec.signature_name == "regress_x_to_y2"
        assert [r.value for r in regress.regression_result.regressions] == [4.0]
        assert classify.model_spec.signature_name == "classify_x_to_y"
        assert classify.classification_result.classifications[0].classes[0].score == 3.0


class TestGrpcMetadataAndStatus:
    def test_metadata_packs_every_signature_in_a_signature_def_map(
            self, server: ServerProcess) -> None:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "half_plus_two_tf2"
        response = server.predict.GetModelMetadata(request, timeout=30)
        packed = response.metadata["signature_def"]
        assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        assert packed.Unpack(signature_map)
        assert set(signature_map.signature_def) == TF1_SIGNATURES | {"__saved_model_init_op"}
        x = signature_map.signature_def["serving_default"].inputs["x"]
        assert x.dtype == types_pb2.DT_FLOAT
        assert [d.size for d in x.tensor_shape.dim] == [1]
        assert response.model_spec.name == "half_plus_two_tf2"
        assert response.model_spec.version.value == 123

    def test_status_lists_every_version_as_available_and_ok(self, server: ServerProcess) -> None:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "two_versions"
        response = server.model_service.GetModelStatus(request, timeout=30)
        assert [(s.version, s.state, s.status.error_code, s.status.error_message)
                for s in response.model_version_status] == [
            (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0, ""),
            (124, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0, "")]

    def test_status_with_a_label_reports_every_version_as_tf_serving_does(
            self, server: ServerProcess) -> None:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "two_versions"
        request.model_spec.version_label = "stable"
        response = server.model_service.GetModelStatus(request, timeout=30)
        assert [s.version for s in response.model_version_status] == [123, 124]
