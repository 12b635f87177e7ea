"""A SavedModel that is slow on purpose: `y = x + 0·(k chained 256x256 matmuls)`.

Small requests, CPU-bound model time (TF releases the GIL), so model execution, not the
transport, is the bottleneck: what overload and drain tests need.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from examples import export_models


def export_busy_model(base_path: Path, *, matmuls: int = 12, version: int = 1) -> Path:
    weights = tf.random.stateless_uniform([256, 256], seed=[1, 2]) / 256.0

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        state = tf.ones([256, 256]) + tf.reduce_sum(x) * 0.0
        state = tf.while_loop(lambda i, s: i < matmuls,
                              lambda i, s: (i + 1, tf.matmul(s, weights)), (0, state))[1]
        return {"y": x + 0.0 * tf.reduce_sum(state)}

    with export_models._staged(base_path, version) as scratch:
        export_models._save_tf2(scratch, tf.Module(), serve)
    return base_path / str(version)
