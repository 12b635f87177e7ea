"""Worker: export the benchmark's SavedModels and their pre-encoded requests.

    python -m bench.export MODELS_DIR [NAME ...]

Both models go through Keras' ExportArchive (as `examples.export_models.export_mlp` does) so the
SavedModel restores in a TF1 session, which is how TF Serving and Berth load it. A model already
exported is kept: MobileNetV2 takes the better part of a minute to trace on this machine.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from bench import models
from examples import export_models


def export_mobilenet_v2(base_path: Path, version: int = 1) -> Path:
    """MobileNetV2 with random weights (weights=None: nothing is downloaded), as ``x`` -> ``y``."""
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    archive = tf.keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", lambda x: {"y": model(x, training=False)},
                         input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32, name="x")])
    final = base_path / str(version)
    scratch = base_path / f".{version}.partial"
    base_path.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(scratch), verbose=False)
    scratch.rename(final)
    return final


def write_payloads(spec: models.ModelSpec, payloads: models.Payloads) -> None:
    """One row of seeded random input, encoded for gRPC (tensor_content) and REST (row JSON)."""
    rng = np.random.default_rng(0)
    # Rounded as float64 so the JSON carries short decimals, not float32's long expansions.
    row = np.round(rng.random(spec.row_shape), spec.json_decimals)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.name
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(row[np.newaxis].astype(np.float32)))
    message = request.SerializeToString()
    payloads.grpc_frame.write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
    payloads.rest_body.write_text(json.dumps({"instances": [row.tolist()]}))


EXPORTERS = {"mlp": export_models.export_mlp, "mobilenet_v2": export_mobilenet_v2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("names", nargs="*", default=list(models.MODELS))
    args = parser.parse_args(argv)
    for name in args.names:
        spec = models.MODELS[name]
        if not spec.version_dir(args.models_dir).exists():
            print(f">> exporting {name}", flush=True)
            EXPORTERS[name](args.models_dir / name)
        payloads = models.Payloads.under(args.models_dir, name)
        if not payloads.rest_body.exists():
            write_payloads(spec, payloads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
