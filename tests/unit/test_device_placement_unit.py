"""Per-model device placement, in process, on virtual CPUs (a session with device_count CPU: 2,
what `tf.config.set_logical_device_configuration` gives sessions for a CPU), and its flag."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from berth_server import cli, errors, options
from berth_server.servables import saved_model

PINNED = "/device:CPU:1"
X = np.array([[1.0, 1.0], [2.0, 0.5]], dtype=np.float32)
Y = X @ np.array([[2.0], [3.0]], dtype=np.float32) + 1.0
# Nodes a session adds for the client's feeds and fetches, on the client's device (CPU:0).
_SESSION_NODES = ("_SOURCE", "_arg_", "_retval_", "_Send", "_Recv")


def two_cpus() -> config_pb2.ConfigProto:
    config = saved_model.session_config(intra_op=0, inter_op=0, gpu_memory_fraction=0)
    config.device_count["CPU"] = 2
    return config


def export_tf1(path: Path, *, device: str | None = None) -> Path:
    """y = x·[[2], [3]] + 1 from the TF1 builder, its ops on `device` when given."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), tf.device(device) if device else contextlib.nullcontext(), \
            v1.Session(graph=graph, config=two_cpus()) as session:
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        w = v1.Variable([[2.0], [3.0]], name="w")
        y = tf.identity(tf.matmul(x, w) + 1.0, name="y")
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "serving_default": v1.saved_model.predict_signature_def({"x": x}, {"y": y})})
        builder.save()
    return path


class _Tf2Model(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable([[2.0], [3.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.matmul(x, self.w) + 1.0}


def export_tf2(path: Path) -> Path:
    """The same function from tf.saved_model.save: the signature calls a library function."""
    module = _Tf2Model()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def traced_devices(model: saved_model.SavedModel) -> dict[str, str]:
    """node → the device it ran on, from a FULL_TRACE run of serving_default."""
    signature = model.signatures["serving_default"]
    metadata = config_pb2.RunMetadata()
    model._session.run(signature.outputs["y"].name, {signature.inputs["x"].name: X},
                       options=config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE),
                       run_metadata=metadata)
    return {node.node_name: device.device for device in metadata.step_stats.dev_stats
            for node in device.node_stats if not node.node_name.startswith(_SESSION_NODES)}


@pytest.fixture(params=[export_tf1, export_tf2], ids=["tf1-builder", "tf2-saved"])
def export(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    exporter = request.param
    return exporter(tmp_path / "1")  # type: ignore[no-any-return]


class TestSessionLoader:
    def test_every_op_of_a_pinned_version_is_on_the_device_and_it_answers(
            self, export: Path) -> None:
        model = saved_model.SavedModel(export, tags=["serve"], config=two_cpus(), device=PINNED)
        try:
            assert {op.device for op in model._graph.get_operations()} == {PINNED}
            np.testing.assert_allclose(model.run("serving_default", {"x": X}, ["y"])["y"], Y)
        finally:
            model.close()

    def test_a_pinned_version_runs_its_compute_on_the_device(self, export: Path) -> None:
        model = saved_model.SavedModel(export, tags=["serve"], config=two_cpus(), device=PINNED)
        try:
            ran = traced_devices(model)
        finally:
            model.close()
        assert any("MatMul" in node for node in ran), ran  # TF2: inside the called function
        assert {device.rsplit("/", 1)[-1] for device in ran.values()} == {"device:CPU:1"}, ran

    def test_an_unpinned_version_runs_where_its_export_put_it(self, tmp_path: Path) -> None:
        path = export_tf1(tmp_path / "1", device=PINNED)
        model = saved_model.SavedModel(path, tags=["serve"], config=two_cpus())
        try:
            assert {device.rsplit("/", 1)[-1] for device in traced_devices(model).values()} \
                == {"device:CPU:1"}
        finally:
            model.close()

    def test_a_placement_replaces_the_exports_own_devices(self, tmp_path: Path) -> None:
        path = export_tf1(tmp_path / "1", device=PINNED)
        model = saved_model.SavedModel(path, tags=["serve"], config=two_cpus(),
                                       device="/device:CPU:0")
        try:
            assert {op.device for op in model._graph.get_operations()} == {"/device:CPU:0"}
            assert {device.rsplit("/", 1)[-1] for device in traced_devices(model).values()} \
                == {"device:CPU:0"}
        finally:
            model.close()

    @pytest.mark.parametrize("device", ["/device:GPU:0", "/device:CPU:2"])
    def test_a_device_the_session_lacks_fails_the_load_naming_it(
            self, tmp_path: Path, device: str) -> None:
        path = export_tf1(tmp_path / "1")
        with pytest.raises(errors.ServingError) as raised:
            saved_model.SavedModel(path, tags=["serve"], config=two_cpus(), device=device)
        assert raised.value.code == errors.Code.INVALID_ARGUMENT
        assert f"on {device}, which this server does not have" in raised.value.message
        assert "its devices: /device:CPU:0, /device:CPU:1" in raised.value.message
        assert str(path) in raised.value.message


# The eager context's devices are fixed when it first runs, so this runs in a fresh process.
_OBJECT_LOADER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import keras, numpy as np, tensorflow as tf
    from tensorflow.python.eager import context
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from berth_server.servables import saved_model

    class Serving(tf.Module):  # Keras 3 held by a tf.Module: served by the object loader
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.serve = tf.function(lambda x: {"y": self.model(x)},
                                     input_signature=[tf.TensorSpec([None, 2], tf.float32)])

    dense = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    module = Serving(dense)
    tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.serve})
    x = np.array([[1.0, 2.0]], np.float32)
    config = saved_model.session_config(intra_op=0, inter_op=0, gpu_memory_fraction=0)
    config.device_count["CPU"] = 2
    model = saved_model.SavedModel(Path(sys.argv[1]), tags=["serve"], config=config,
                                   device=sys.argv[2])
    eager = context.context()
    eager.enable_run_metadata()
    got = model.run("serving_default", {"x": x}, ["y"])["y"]
    metadata = eager.export_run_metadata()
    print(json.dumps({
        "object_loader": model._object_graph is not None,
        "close": bool(np.allclose(got, np.asarray(dense(x)))),
        "ran_on": sorted({node.device.rsplit("/", 1)[-1] for function in metadata.function_graphs
                          for graph in function.partition_graphs for node in graph.node}),
        "ops": sorted({node.op for function in metadata.function_graphs
                       for graph in function.partition_graphs for node in graph.node}),
    }))
""")


class TestObjectLoader:
    def test_an_object_loader_version_loads_and_runs_on_the_device(self, tmp_path: Path) -> None:
        result = subprocess.run([sys.executable, "-c", _OBJECT_LOADER, str(tmp_path / "1"),
                                 PINNED], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert result.returncode == 0, result.stderr[-3000:]
        seen = json.loads(result.stdout.splitlines()[-1])
        assert seen["object_loader"] and seen["close"], seen
        assert seen["ran_on"] == ["device:CPU:1"], seen
        assert any("MatMul" in op for op in seen["ops"]), seen


class TestFlag:
    @pytest.mark.parametrize("spelling", ["/device:GPU:1", "/gpu:1", "GPU:1", "device:gpu:1",
                                          " /device:GPU:01 "])
    def test_device_spellings_are_one_name(self, spelling: str) -> None:
        assert options.parse_device_placement(f"resnet={spelling}") == {"resnet": "/device:GPU:1"}

    def test_several_models_and_a_trailing_comma(self) -> None:
        assert options.parse_device_placement("resnet=/gpu:1, bert=/device:CPU:0,") == {
            "resnet": "/device:GPU:1", "bert": "/device:CPU:0"}

    @pytest.mark.parametrize(("text", "words"), [
        ("resnet", "'resnet' is not model=device"),
        ("resnet=", "'resnet=' is not model=device"),
        ("=/gpu:0", "'=/gpu:0' is not model=device"),
        ("resnet=gpu1", "'gpu1' (model resnet) is not a device"),
        ("resnet=/job:worker/device:GPU:0", "(model resnet) is not a device"),
        ("resnet=/gpu:0,resnet=/gpu:1", "model resnet is placed twice"),
    ])
    def test_a_malformed_value_says_what_is_wrong(self, text: str, words: str) -> None:
        with pytest.raises(ValueError) as raised:
            options.parse_device_placement(text)
        assert words in str(raised.value)

    def test_validate_refuses_a_model_not_in_the_one_model_config(self) -> None:
        opts = cli.parse_flags(["--model_name=hp", "--model_base_path=/models/hp",
                                "--model_device_placement=hq=/gpu:0"], environ={})
        with pytest.raises(cli.UsageError) as raised:
            cli.validate(opts)
        assert str(raised.value) == ("--model_device_placement names model(s) that are not in "
                                     "the model config: hq (configured: hp)")

    def test_validate_checks_names_against_the_config_file(self, tmp_path: Path) -> None:
        config = tmp_path / "models.config"
        config.write_text('model_config_list { config { name: "a" base_path: "/m/a" '
                          'model_platform: "tensorflow" } }')
        good = cli.parse_flags([f"--model_config_file={config}",
                                "--model_device_placement=a=/gpu:0"], environ={})
        cli.validate(good)
        assert good.device_placements == {"a": "/device:GPU:0"}
        bad = cli.parse_flags([f"--model_config_file={config}",
                               "--model_device_placement=a=/gpu:0,b=/gpu:1"], environ={})
        with pytest.raises(cli.UsageError, match="not in the model config: b"):
            cli.validate(bad)

    def test_validate_names_the_flag_for_a_malformed_value(self) -> None:
        opts = cli.parse_flags(["--model_base_path=/models/hp",
                                "--model_device_placement=default"], environ={})
        with pytest.raises(cli.UsageError) as raised:
            cli.validate(opts)
        assert str(raised.value).startswith("--model_device_placement: 'default' is not")
