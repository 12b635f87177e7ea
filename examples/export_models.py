"""Export Berth's example and test SavedModels with TensorFlow (nothing is downloaded).

Run as a script, ``python examples/export_models.py OUT_DIR`` writes every model below to
``OUT_DIR/<name>/<version>/`` and a ``OUT_DIR/models.config`` (TF Serving ``model_config_list``
text format) that serves them all by absolute path.  Tests import the exporters one by one.

Every exporter builds its version in a dot-named sibling folder and renames it into place: a
polling server never sees a half-written version (TF Serving does not check, see reference §6.1),
and a version that already exists is replaced.

The half_plus_* graphs follow TF Serving's ``saved_model_half_plus_two.py`` (reference §8) so the
documented exchanges hold against them.  Facts that shape them:

* TF1's predict input ``x`` is ``tf.identity`` of the parsed ``tf.Example`` feature, so its
  SignatureDef shape is [-1, 1].  Nothing in the graph pins that shape at run time: TF Serving feeds
  ``x:0`` through the C++ session, which does not check feeds against static shapes, so
  ``{"instances": [1.0, 2.0, 5.0]}`` (shape [3]) answers [2.5, 3.0, 4.5] and [[1.0], [2.0]] answers
  [[2.5], [3.0]].  ``tf.saved_model.load`` signatures behave the same; only the Python
  ``Session.run`` feed check would reject shape [3], so a runtime must not use it.
* TF2's predict input ``x`` is [1] with a SignatureDef default of [0.0] (TF Serving's TF2 test model
  answers a request without inputs with 2.0), and every method_name is predict.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

_PREDICT = "tensorflow/serving/predict"
_REGRESS = "tensorflow/serving/regress"
_CLASSIFY = "tensorflow/serving/classify"
_ASSET_NAME = "foo.txt"
_ASSET_CONTENTS = "asset-file-contents"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


@contextlib.contextmanager
def _staged(base_path: Path, version: int) -> Iterator[Path]:
    """Yield a scratch dir that replaces ``base_path/version`` only once fully written.

    Dot-named scratch dirs are not numeric, so a polling server skips them.  Replacing keeps
    re-running the script (``make serve`` after an edit) working; exports are deterministic.
    """
    base_path.mkdir(parents=True, exist_ok=True)
    final = base_path / str(version)
    scratch = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=base_path))
    retired = base_path / f"{scratch.name}.old"
    try:
        yield scratch
        _readable_by_all(scratch)
        if final.exists():
            final.rename(retired)
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def _readable_by_all(root: Path) -> None:
    """mkdtemp makes a 0700 dir (and a umask may narrow the rest): open the version up to every
    user, since servers run as their own uid (the server image's is 1000), not the exporter's."""
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


def write_warmup(version_dir: Path, requests: Iterable[predict_pb2.PredictRequest]) -> Path:
    """Write ``assets.extra/tf_serving_warmup_requests``: a TFRecord of PredictionLog.predict_log.

    The server replays these before the version turns AVAILABLE (reference §6.4).
    """
    path = version_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def _sig(
    inputs: dict[str, tf.Tensor], outputs: dict[str, tf.Tensor], method: str
) -> meta_graph_pb2.SignatureDef:
    """A TF1 SignatureDef; the canned v1 builders refuse the float regress/classify inputs."""

    def info(tensor: tf.Tensor) -> meta_graph_pb2.TensorInfo:
        return meta_graph_pb2.TensorInfo(
            name=tensor.name,
            dtype=tensor.dtype.as_datatype_enum,
            tensor_shape=tensor.shape.as_proto(),
        )

    return meta_graph_pb2.SignatureDef(
        inputs={k: info(t) for k, t in inputs.items()},
        outputs={k: info(t) for k, t in outputs.items()},
        method_name=method,
    )


def _save_tf1_half_plus(version_dir: Path, *, b: float) -> None:
    """TF Serving's TF1 half_plus_two graph with ``y = 0.5 * x + b`` (y2 and y3 keep c = 3)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess, tempfile.TemporaryDirectory() as tmp:
        a = v1.Variable(0.5, name="a")
        b_var = v1.Variable(b, name="b")
        c = v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = v1.io.parse_example(
            serialized,
            {
                "x": v1.io.FixedLenFeature([1], tf.float32),
                "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        x = tf.identity(features["x"], name="x")
        x2 = tf.identity(features["x2"], name="x2")
        y = tf.identity(a * x + b_var, name="y")
        y2 = tf.identity(a * x + c, name="y2")
        y3 = tf.identity(a * x2 + c, name="y3")

        source = Path(tmp) / _ASSET_NAME
        source.write_text(_ASSET_CONTENTS)
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, tf.constant(str(source)))
        # Like the official model, loading must run a main op (it assigns this variable).
        filename = v1.Variable(_ASSET_NAME, name="filename_tensor", trainable=False, collections=[])

        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(version_dir))
        builder.add_meta_graph_and_variables(
            sess,
            [v1.saved_model.SERVING],
            signature_def_map={
                "serving_default": _sig({"x": x}, {"y": y}, _PREDICT),
                "regress_x_to_y": _sig({"inputs": serialized}, {"outputs": y}, _REGRESS),
                "regress_x_to_y2": _sig({"inputs": serialized}, {"outputs": y2}, _REGRESS),
                "regress_x2_to_y3": _sig({"inputs": x2}, {"outputs": y3}, _REGRESS),
                "classify_x_to_y": _sig({"inputs": serialized}, {"scores": y}, _CLASSIFY),
                "classify_x2_to_y3": _sig({"inputs": x2}, {"scores": y3}, _CLASSIFY),
            },
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=tf.group(filename.assign(_ASSET_NAME)),
        )
        builder.save()


def export_half_plus_two(base_path: Path, version: int = 123) -> Path:
    """TF1 half_plus_two (y = 0.5x + 2) with one warmup request ({"x": [[1.0], [2.0]]})."""
    with _staged(base_path, version) as scratch:
        _save_tf1_half_plus(scratch, b=2.0)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "serving_default"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0]], dtype=tf.float32))
        write_warmup(scratch, [request])
    return base_path / str(version)


def export_half_plus_three(base_path: Path, version: int = 123) -> Path:
    """TF1 half_plus_three: y = 0.5x + 3, no warmup file (a missing one must be fine)."""
    with _staged(base_path, version) as scratch:
        _save_tf1_half_plus(scratch, b=3.0)
    return base_path / str(version)


def export_two_versions(base_path: Path, versions: tuple[int, int] = (123, 124)) -> list[Path]:
    """Two TF1 versions that answer differently: the first 0.5x + 2, the second 0.5x + 3.

    TF Serving's ``saved_model_half_plus_two_2_versions`` holds two identical copies; ours differ
    so a test can tell which version answered.  The documented 2_versions exchange
    ([[1, 2], [3, 4]] -> [[2.5, 3], [3.5, 4]]) holds for the first version.
    """
    low, high = versions
    with _staged(base_path, low) as scratch:
        _save_tf1_half_plus(scratch, b=2.0)
    with _staged(base_path, high) as scratch:
        _save_tf1_half_plus(scratch, b=3.0)
    return [base_path / str(low), base_path / str(high)]


class _HalfPlusTwoTf2(tf.Module):
    """The TF2-native half_plus_two: same signature names, every method_name predict."""

    def __init__(self, asset: Path) -> None:
        super().__init__()
        self.a = tf.Variable(0.5, name="a")
        self.b = tf.Variable(2.0, name="b")
        self.c = tf.Variable(3.0, name="c")
        self.asset = tf.saved_model.Asset(str(asset))

    @staticmethod
    def _parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return tf.io.parse_example(
            serialized,
            {
                "x": tf.io.FixedLenFeature([1], tf.float32),
                "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )

    # Only a tensor default (not a NumPy one) is saved as the SignatureDef's `defaults`.
    @tf.function(input_signature=[tf.TensorSpec([1], tf.float32, name="x")])
    def predict(self, x: tf.Tensor = tf.constant([0.0])) -> dict[str, tf.Tensor]:  # noqa: B008
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress_x_to_y(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * self._parse(inputs)["x"] + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress_x_to_y2(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * self._parse(inputs)["x"] + self.c}

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="inputs")])
    def regress_x2_to_y3(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * inputs + self.c}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_x_to_y(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": self.a * self._parse(inputs)["x"] + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="inputs")])
    def classify_x2_to_y3(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"scores": self.a * inputs + self.c}


def export_half_plus_two_tf2(base_path: Path, version: int = 123) -> Path:
    """TF2 half_plus_two (tf.saved_model.save adds the ``__saved_model_init_op`` signature)."""
    with _staged(base_path, version) as scratch, tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / _ASSET_NAME
        source.write_text(_ASSET_CONTENTS)
        module = _HalfPlusTwoTf2(source)
        signatures = {
            "serving_default": module.predict,
            "regress_x_to_y": module.regress_x_to_y,
            "regress_x_to_y2": module.regress_x_to_y2,
            "regress_x2_to_y3": module.regress_x2_to_y3,
            "classify_x_to_y": module.classify_x_to_y,
            "classify_x2_to_y3": module.classify_x2_to_y3,
        }
        tf.saved_model.save(module, str(scratch), signatures=signatures)
    return base_path / str(version)


def _save_tf2(version_dir: Path, module: tf.Module, serve: Callable[..., object]) -> None:
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": serve})


def export_multi_io(base_path: Path, version: int = 1) -> Path:
    """Two inputs of two dtypes, two outputs of two ranks: ``a`` float [-1,3], ``b`` int64 [-1].

    ``sum`` (float [-1]) is each row's sum plus b; ``scaled`` (float [-1,3]) is each row times b.
    """

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 3], tf.float32, name="a"),
            tf.TensorSpec([None], tf.int64, name="b"),
        ]
    )
    def serve(a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        factor = tf.cast(b, tf.float32)
        return {"sum": tf.reduce_sum(a, axis=1) + factor, "scaled": a * factor[:, None]}

    with _staged(base_path, version) as scratch:
        _save_tf2(scratch, tf.Module(), serve)
    return base_path / str(version)


def export_string_model(base_path: Path, version: int = 1) -> Path:
    """DT_STRING in and out: ``text`` [-1] -> ``length`` int32, ``upper`` and ``upper_bytes``.

    Both string outputs hold the ASCII-uppercased bytes; the ``_bytes`` alias is the one that the
    REST API must answer as ``{"b64": ...}``.
    """

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(text: tf.Tensor) -> dict[str, tf.Tensor]:
        upper = tf.strings.upper(text)
        return {"length": tf.strings.length(text), "upper": upper, "upper_bytes": upper}

    with _staged(base_path, version) as scratch:
        _save_tf2(scratch, tf.Module(), serve)
    return base_path / str(version)


def export_busy_model(base_path: Path, *, matmuls: int = 12, version: int = 1) -> Path:
    """Slow on purpose: ``y = x + 0·(matmuls chained 256x256 matmuls)``, ``x`` float [-1].

    Small requests, CPU-bound model time (TF releases the GIL), so model execution and not the
    transport is the bottleneck: what the drain test and ``bench.overload`` need (so it is not
    one of the ``EXPORTERS`` the script writes).
    """
    weights = tf.random.stateless_uniform([256, 256], seed=[1, 2]) / 256.0

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        state = tf.ones([256, 256]) + tf.reduce_sum(x) * 0.0
        state = tf.while_loop(lambda i, s: i < matmuls,
                              lambda i, s: (i + 1, tf.matmul(s, weights)), (0, state))[1]
        return {"y": x + 0.0 * tf.reduce_sum(state)}

    with _staged(base_path, version) as scratch:
        _save_tf2(scratch, tf.Module(), serve)
    return base_path / str(version)


def export_mlp(base_path: Path, version: int = 1, *, seed: int = 0) -> Path:
    """The benchmark MLP: 10 floats -> Dense 64 relu -> 32 relu -> 1 sigmoid, as ``x`` -> ``y``.

    Initializers carry their own seeds, so the weights are the same on every export without
    touching the process-wide random state.
    """
    layers = tf.keras.layers
    glorot = tf.keras.initializers.GlorotUniform
    model = tf.keras.Sequential(
        [
            tf.keras.Input((10,)),
            layers.Dense(64, "relu", kernel_initializer=glorot(seed=seed)),
            layers.Dense(32, "relu", kernel_initializer=glorot(seed=seed + 1)),
            layers.Dense(1, "sigmoid", kernel_initializer=glorot(seed=seed + 2)),
        ]
    )
    # Keras' ExportArchive tracks the model's variables so that the SavedModel also restores in
    # a TF1 session (as TF Serving and Berth load it); a bare tf.Module wrapper would not.
    archive = tf.keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda x: {"y": model(x)},
                         input_signature=[tf.TensorSpec([None, 10], tf.float32, name="x")])
    with _staged(base_path, version) as scratch:
        archive.write_out(str(scratch), verbose=False)
    return base_path / str(version)


EXPORTERS: dict[str, Callable[[Path], object]] = {
    "half_plus_two": export_half_plus_two,
    "half_plus_two_tf2": export_half_plus_two_tf2,
    "half_plus_three": export_half_plus_three,
    "two_versions": export_two_versions,
    "multi_io": export_multi_io,
    "string_model": export_string_model,
    "mlp": export_mlp,
}
"""Model name (also its folder under OUT_DIR) -> exporter with its default version(s)."""


def models_config(out_dir: Path, names: Iterable[str]) -> str:
    """The model_config_list text serving ``out_dir/<name>``; two_versions serves all versions."""
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        model = config.model_config_list.config.add(
            name=name, base_path=str((out_dir / name).resolve()), model_platform="tensorflow"
        )
        if name == "two_versions":
            model.model_version_policy.all.SetInParent()
    return text_format.MessageToString(config)


def export_all(out_dir: Path) -> Path:
    """Export every model into ``out_dir`` and return the path of the models.config written."""
    for name, export in EXPORTERS.items():
        export(out_dir / name)
    config_path = out_dir / "models.config"
    config_path.write_text(models_config(out_dir, EXPORTERS))
    return config_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to create the models in")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    config_path = export_all(args.out_dir)
    elapsed_seconds = time.perf_counter() - started
    print(f"exported {len(EXPORTERS)} models in {elapsed_seconds:.2f} s; config: {config_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
