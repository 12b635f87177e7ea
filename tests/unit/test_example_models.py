"""The example SavedModels have TF Serving's signatures and answer its documented exchanges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from examples import export_models

PREDICT = "tensorflow/serving/predict"
REGRESS = "tensorflow/serving/regress"
CLASSIFY = "tensorflow/serving/classify"
Tensors = dict[str, tuple[str, list[int]]]
Described = dict[str, tuple[str, Tensors, Tensors]]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("models")
    export_models.export_all(out_dir)
    return out_dir


def signature_defs(version_dir: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    (meta_graph,) = saved_model.meta_graphs
    assert list(meta_graph.meta_info_def.tags) == ["serve"]
    return dict(meta_graph.signature_def)


def describe(version_dir: Path) -> Described:
    """signature key -> (method_name, {alias: (dtype, dims)} for inputs, same for outputs)."""

    def tensors(infos: Any) -> Tensors:
        return {
            alias: (tf.dtypes.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim])
            for alias, info in infos.items()
        }

    return {
        key: (sig.method_name, tensors(sig.inputs), tensors(sig.outputs))
        for key, sig in signature_defs(version_dir).items()
        if key != "__saved_model_init_op"
    }


def example(**features: float) -> bytes:
    proto = tf.train.Example()
    for name, value in features.items():
        proto.features.feature[name].float_list.value.append(value)
    return proto.SerializeToString()


def call(version_dir: Path, signature: str, **inputs: Any) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(str(version_dir))
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {alias: tensor.numpy() for alias, tensor in outputs.items()}


def test_models_config_serves_every_model_by_absolute_path(models_dir: Path) -> None:
    config = text_format.Parse(
        (models_dir / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    models = {m.name: m for m in config.model_config_list.config}
    assert set(models) == set(export_models.EXPORTERS)
    for name, model in models.items():
        assert model.base_path == str((models_dir / name).resolve())
        assert model.model_platform == "tensorflow"
    assert models["two_versions"].model_version_policy.HasField("all")
    assert not [p for p in models_dir.glob("*/.*")], "scratch folders were left behind"


def test_half_plus_two_has_tf_servings_tf1_signatures(models_dir: Path) -> None:
    example_in = {"inputs": ("string", [-1])}
    x2_in = {"inputs": ("float32", [-1, 1])}
    assert describe(models_dir / "half_plus_two" / "123") == {
        "serving_default": (PREDICT, {"x": ("float32", [-1, 1])}, {"y": ("float32", [-1, 1])}),
        "regress_x_to_y": (REGRESS, example_in, {"outputs": ("float32", [-1, 1])}),
        "regress_x_to_y2": (REGRESS, example_in, {"outputs": ("float32", [-1, 1])}),
        "regress_x2_to_y3": (REGRESS, x2_in, {"outputs": ("float32", [-1, 1])}),
        "classify_x_to_y": (CLASSIFY, example_in, {"scores": ("float32", [-1, 1])}),
        "classify_x2_to_y3": (CLASSIFY, x2_in, {"scores": ("float32", [-1, 1])}),
    }


def test_half_plus_two_answers_the_documented_exchanges(models_dir: Path) -> None:
    version_dir = models_dir / "half_plus_two" / "123"
    flat = call(version_dir, "serving_default", x=[1.0, 2.0, 5.0])["y"]
    np.testing.assert_allclose(flat, [2.5, 3.0, 4.5])
    column = call(version_dir, "serving_default", x=[[2.0], [3.0], [4.0]])["y"]
    np.testing.assert_allclose(column, [[3.0], [3.5], [4.0]])
    regressed = call(version_dir, "regress_x_to_y", inputs=[example(x=80.0)])["outputs"]
    np.testing.assert_allclose(regressed, [[42.0]])
    scores = call(version_dir, "classify_x_to_y", inputs=[example(x=20.0)])["scores"]
    np.testing.assert_allclose(scores, [[12.0]])
    y2 = call(version_dir, "regress_x_to_y2", inputs=[example(x=1.0)])["outputs"]
    np.testing.assert_allclose(y2, [[3.5]])
    y3 = call(version_dir, "regress_x2_to_y3", inputs=np.array([[4.0]], np.float32))["outputs"]
    np.testing.assert_allclose(y3, [[5.0]])


def test_half_plus_two_carries_its_asset_and_a_predict_warmup_record(models_dir: Path) -> None:
    version_dir = models_dir / "half_plus_two" / "123"
    assert (version_dir / "assets" / "foo.txt").read_text() == "asset-file-contents"
    records = list(tf.data.TFRecordDataset(str(version_dir / export_models.WARMUP_FILE)))
    assert len(records) == 1
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    assert log.WhichOneof("log_type") == "predict_log"
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(tf.make_ndarray(log.predict_log.request.inputs["x"]), [[1.0], [2.0]])


def test_half_plus_two_tf2_labels_every_signature_predict(models_dir: Path) -> None:
    version_dir = models_dir / "half_plus_two_tf2" / "123"
    described = describe(version_dir)
    assert set(described) == set(describe(models_dir / "half_plus_two" / "123"))
    assert {method for method, _, _ in described.values()} == {PREDICT}
    assert described["serving_default"][1:] == ({"x": ("float32", [1])}, {"y": ("float32", [1])})
    defs = signature_defs(version_dir)
    assert "__saved_model_init_op" in defs
    np.testing.assert_allclose(tf.make_ndarray(defs["serving_default"].defaults["x"]), [0.0])
    assert (version_dir / "assets" / "foo.txt").read_text() == "asset-file-contents"
    np.testing.assert_allclose(call(version_dir, "serving_default", x=[2.0])["y"], [3.0])
    regressed = call(version_dir, "regress_x_to_y", inputs=[example(x=80.0)])["outputs"]
    np.testing.assert_allclose(regressed, [[42.0]])
    y3 = call(version_dir, "classify_x2_to_y3", inputs=np.array([[4.0]], np.float32))["scores"]
    np.testing.assert_allclose(y3, [[5.0]])


def test_half_plus_three_adds_three_and_has_no_warmup(models_dir: Path) -> None:
    version_dir = models_dir / "half_plus_three" / "123"
    y = call(version_dir, "serving_default", x=[1.0, 2.0, 5.0])["y"]
    np.testing.assert_allclose(y, [3.5, 4.0, 5.5])
    assert not (version_dir / export_models.WARMUP_FILE).exists()


def test_two_versions_answer_differently(models_dir: Path) -> None:
    base_path = models_dir / "two_versions"
    x = [[1.0, 2.0], [3.0, 4.0]]
    low = call(base_path / "123", "serving_default", x=x)["y"]
    high = call(base_path / "124", "serving_default", x=x)["y"]
    np.testing.assert_allclose(low, [[2.5, 3.0], [3.5, 4.0]])
    np.testing.assert_allclose(high, [[3.5, 4.0], [4.5, 5.0]])


def test_multi_io_mixes_dtypes_and_ranks(models_dir: Path) -> None:
    version_dir = models_dir / "multi_io" / "1"
    assert describe(version_dir) == {
        "serving_default": (
            PREDICT,
            {"a": ("float32", [-1, 3]), "b": ("int64", [-1])},
            {"sum": ("float32", [-1]), "scaled": ("float32", [-1, 3])},
        )
    }
    a = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], np.float32)
    outputs = call(version_dir, "serving_default", a=a, b=np.array([10, 2], np.int64))
    np.testing.assert_allclose(outputs["sum"], [16.0, 3.5])
    np.testing.assert_allclose(outputs["scaled"], [[10.0, 20.0, 30.0], [1.0, 1.0, 1.0]])


def test_string_model_returns_lengths_and_uppercased_bytes(models_dir: Path) -> None:
    version_dir = models_dir / "string_model" / "1"
    assert describe(version_dir) == {
        "serving_default": (
            PREDICT,
            {"text": ("string", [-1])},
            {"length": ("int32", [-1]), "upper": ("string", [-1]), "upper_bytes": ("string", [-1])},
        )
    }
    outputs = call(version_dir, "serving_default", text=[b"abc", b"Hi\xff"])
    assert outputs["length"].tolist() == [3, 3]
    assert outputs["upper"].tolist() == [b"ABC", b"HI\xff"]
    assert outputs["upper_bytes"].tolist() == outputs["upper"].tolist()


def test_mlp_is_the_same_on_every_export(models_dir: Path, tmp_path: Path) -> None:
    version_dir = models_dir / "mlp" / "1"
    assert describe(version_dir) == {
        "serving_default": (PREDICT, {"x": ("float32", [-1, 10])}, {"y": ("float32", [-1, 1])})
    }
    x = np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(3, 10)
    first = call(version_dir, "serving_default", x=x)["y"]
    again = call(export_models.export_mlp(tmp_path / "mlp"), "serving_default", x=x)["y"]
    assert first.shape == (3, 1) and ((first > 0) & (first < 1)).all()
    np.testing.assert_array_equal(first, again)


def test_reexport_replaces_the_version_in_place(tmp_path: Path) -> None:
    base_path = tmp_path / "half_plus_three"
    export_models.export_half_plus_three(base_path, version=7)
    version_dir = export_models.export_half_plus_three(base_path, version=7)
    assert sorted(p.name for p in base_path.iterdir()) == ["7"]
    np.testing.assert_allclose(call(version_dir, "serving_default", x=[1.0])["y"], [3.5])
