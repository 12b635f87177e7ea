"""SavedModels the real-pod scenarios serve, exported to the node's disk by the local TensorFlow.

* `export_versions`: version v answers y = 0.5x + v, so every answer tells which version served it.
* `export_slow_start`: a version whose warmup request sleeps inside the graph for a set time, so
  its load outlasts the liveness probe's budget by a known margin on any machine.
* `export_broken`: a version directory whose saved_model.pb is not a SavedModel: it never loads.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterable

import tensorflow as tf
from tensorflow.python.data.experimental.ops import testing as data_testing
from tensorflow_serving.apis import predict_pb2

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))  # examples/ is scripts, not a package
import export_models  # noqa: E402


class _Affine(tf.Module):
    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = tf.constant(offset)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 0.5 * x + self.offset}


class _SlowStart(tf.Module):
    """y = 0.5x + 2 after sleeping `delay_us` microseconds in the graph (a SleepDataset: TF's
    only sleep op, through tf.data's testing transformation)."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.float32, name="x"),
            tf.TensorSpec([], tf.int64, name="delay_us"),
        ]
    )
    def serve(self, x: tf.Tensor, delay_us: tf.Tensor) -> dict[str, tf.Tensor]:
        slept = tf.data.Dataset.range(1).apply(data_testing.sleep(delay_us))
        zero = slept.reduce(tf.constant(0, tf.int64), lambda total, item: total + item)
        return {"y": 0.5 * x + 2.0 + tf.cast(zero, tf.float32)}


def _save(module: tf.Module, base_path: pathlib.Path, version: int) -> pathlib.Path:
    directory = base_path / str(version)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    _open_to_all(directory)
    return directory


def export_versions(base_path: pathlib.Path, versions: Iterable[int]) -> pathlib.Path:
    for version in versions:
        _save(_Affine(float(version)), base_path, version)
    return base_path


def export_slow_start(
    base_path: pathlib.Path, *, version: int, warmup_seconds: float
) -> pathlib.Path:
    directory = _save(_SlowStart(), base_path, version)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    request.inputs["delay_us"].CopyFrom(
        tf.make_tensor_proto(int(warmup_seconds * 1_000_000), dtype=tf.int64)
    )
    export_models.write_warmup(directory, [request])
    _open_to_all(directory)
    return base_path


def export_broken(base_path: pathlib.Path, *, version: int) -> pathlib.Path:
    directory = base_path / str(version)
    directory.mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    _open_to_all(directory)
    return base_path


def _open_to_all(root: pathlib.Path) -> None:
    """The server runs as the image's user, not as the exporting root; the model's directory
    is what a pod mounts, so it is opened too."""
    for path in [root.parent, root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
