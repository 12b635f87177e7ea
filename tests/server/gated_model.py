"""A SavedModel whose requests wait at a gate the test opens, and how to see them waiting.

`y = x`, answered only once the gate file exists: each request checks for it every 20 ms and
sleeps in between (no CPU spent while held). A test can so keep requests in flight for exactly
as long as it needs, on a fast or a loaded machine alike, and let them all finish with
`open_gate`; while they are held, `in_flight` reads how many the server has admitted (the
`:berth:serving:queue_depth` gauge, which needs `monitoring_flag`). What tests of admission
limits and of versions replaced under a request need, without racing the clock.
"""

from __future__ import annotations

import re
from pathlib import Path

import tensorflow as tf
from server_http import get

# tf.data's own test helper: the one graph op that waits without spinning.
from tensorflow.python.data.experimental.ops import testing as tf_data_testing

from examples import export_models

METRICS_PATH = "/monitoring/prometheus/metrics"
_POLL_MICROS = 20_000


def export_gated_model(base_path: Path, gate: Path, *, version: int = 1) -> Path:
    """Export version `version` under `base_path`; its requests wait until `gate` exists."""
    assert not set("*?[]\\") & set(str(gate)), f"{gate} would be read as a glob pattern"

    def nap() -> tf.Tensor:
        naps = tf.data.Dataset.range(1).apply(tf_data_testing.sleep(_POLL_MICROS))
        return naps.reduce(tf.constant(0, tf.int64), lambda total, n: total + n)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        # The pattern depends on the input, so no graph optimisation evaluates it at load time.
        suffix = tf.strings.substr(tf.strings.as_string(tf.reduce_sum(x)), 0, 0)
        pattern = tf.strings.join([str(gate), suffix])
        waited = tf.while_loop(lambda n: tf.equal(tf.size(tf.io.matching_files(pattern)), 0),
                               lambda n: [n + nap()], [tf.constant(0, tf.int64)])[0]
        return {"y": x + 0.0 * tf.cast(waited, tf.float32)}

    with export_models._staged(base_path, version) as scratch:
        export_models._save_tf2(scratch, tf.Module(), serve)
    return base_path / str(version)


def open_gate(gate: Path) -> None:
    """Let every held request (and every later one) answer."""
    gate.touch()


def monitoring_flag(folder: Path) -> str:
    """`--monitoring_config_file=...` turning Prometheus on at METRICS_PATH."""
    config = folder / "monitoring.config"
    config.write_text(f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n')
    return f"--monitoring_config_file={config}"


def in_flight(rest_port: int, model: str) -> int:
    """Requests of `model` admitted and not yet answered, as the server's gauge says."""
    text = get(rest_port, METRICS_PATH).body.decode()
    found = re.search(rf'^:berth:serving:queue_depth\{{model_name="{re.escape(model)}"\}} (\S+)$',
                      text, re.M)
    return int(float(found.group(1))) if found else 0
