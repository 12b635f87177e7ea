"""What a REST predict body costs in Python before and after the model, stage by stage.

    python -m bench.rest_json [--repeats N]

One table measured in one run, min of N rounds per row, for the benchmark's bodies
(`bench.models`: MobileNetV2's 224×224×3 image in row format with 3 decimals, and the MLP's
10 numbers): the general path (`json_body.parse_body` with orjson, then
`predict_request.decode_predict_request`) against the dense-body path (`dense_body.parse`, then
`decode_dense_request`), as `rest.api` now runs them; then the response encoding. A second table
splits the TF Serving users' image path, `{"instances": [{"image_bytes": {"b64": JPEG}}]}` to a
SavedModel that decodes the JPEG itself: body parse, base64 decode, tensor building, and the
model's decode-and-resize run in process for scale.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import models
from berth_server.rest import dense_body, json_body, json_tensor, predict_request, response

FLOAT_INPUT = {"x": json_tensor.DT_FLOAT}


def _best_ms(work: Callable[[], object], repeats: int) -> float:
    work()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _body(spec: models.ModelSpec) -> bytes:
    """The body `bench.export` writes for `spec`."""
    row = np.round(np.random.default_rng(0).random(spec.row_shape), spec.json_decimals)
    return json.dumps({"instances": [row.tolist()]}).encode()


def _general(body: bytes) -> predict_request.PredictInputs:
    return predict_request.decode_predict_request(json_body.parse_body(body), FLOAT_INPUT,
                                                  signature_name="")


def _dense(body: bytes) -> predict_request.PredictInputs:
    """What `rest.api` runs now."""
    parsed = predict_request.parse_predict_body(body)
    return predict_request.decode_parsed_request(parsed, body, FLOAT_INPUT, signature_name="")


def _request_rows(spec: models.ModelSpec, repeats: int) -> list[tuple[str, float, float]]:
    body = _body(spec)
    document = json_body.parse_body(body)
    dense = dense_body.parse(body)
    general, fast = _general(body).tensors["x"], _dense(body).tensors["x"]
    assert general.tobytes() == fast.tobytes() and general.shape == fast.shape
    kib = f"{spec.name} ({len(body) // 1024} KiB)"
    rows = [(f"{kib}: parse", _best_ms(lambda: json_body.parse_body(body), repeats),
             _best_ms(lambda: predict_request.parse_predict_body(body), repeats))]
    if dense is not None:
        rows.append((f"{kib}: list → ndarray", _best_ms(
            lambda: predict_request.decode_predict_request(document, FLOAT_INPUT,
                                                           signature_name=""), repeats),
            _best_ms(lambda: predict_request.decode_dense_request(dense, FLOAT_INPUT), repeats)))
    rows.append((f"{kib}: parse + convert", _best_ms(lambda: _general(body), repeats),
                 _best_ms(lambda: _dense(body), repeats)))
    return rows


def _encode_rows(repeats: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    rows = []
    for shape, what in (((1, 1000), "MobileNetV2's 1×1000 scores"),
                        ((1, 224, 224, 3), "a 1×224×224×3 float32 echo")):
        outputs = {"y": rng.random(shape, dtype=np.float32)}
        rows.append((f"encode {what}", _best_ms(
            lambda outputs=outputs: response.encode_predict_response(outputs, True), repeats)))
    return rows


def _jpeg_model(base: Path) -> tuple[Any, bytes]:
    """A SavedModel taking JPEG bytes (`image_bytes`) as image models served to TF Serving do,
    and one 224×224 JPEG of a smooth picture with noise (~30 KB, like a photo)."""
    import tensorflow as tf

    from berth_server.servables import saved_model

    class Decode(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
            def one(data: tf.Tensor) -> tf.Tensor:
                image = tf.image.resize(tf.io.decode_jpeg(data, channels=3), [224, 224])
                return tf.reduce_mean(image, axis=[0, 1])

            return {"y": tf.map_fn(one, image_bytes, fn_output_signature=tf.float32)}

    module = Decode()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 200, 224)[None, :, None] + np.linspace(0, 50, 224)[:, None, None]
    pixels = np.clip(gradient + rng.normal(0, 12, (224, 224, 3)), 0, 255).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(pixels, quality=90).numpy()
    model = saved_model.SavedModel(base / "1", tags=["serve"], config=saved_model.session_config(
        intra_op=0, inter_op=0, gpu_memory_fraction=0))
    return model, jpeg


def _b64_rows(repeats: int) -> list[tuple[str, float]]:
    model, jpeg = _jpeg_model(Path(tempfile.mkdtemp(prefix="berth-bench-")))
    text = base64.b64encode(jpeg).decode()
    body = json.dumps({"instances": [{"image_bytes": {"b64": text}}]}).encode()
    dtypes = {"image_bytes": json_tensor.DT_STRING}
    document = json_body.parse_body(body)
    tensors = predict_request.decode_predict_request(document, dtypes,
                                                     signature_name="").tensors
    return [
        (f"body: {len(body) // 1024} KiB, JPEG {len(jpeg) // 1024} KiB", 0.0),
        ("parse (json_body.parse_body)", _best_ms(lambda: json_body.parse_body(body), repeats)),
        ("parse as rest.api does (dense attempt first)",
         _best_ms(lambda: predict_request.parse_predict_body(body), repeats)),
        ("base64 decode alone", _best_ms(lambda: base64.b64decode(text, validate=True), repeats)),
        ("convert (b64 decode + string tensor)", _best_ms(
            lambda: predict_request.decode_predict_request(document, dtypes, signature_name=""),
            repeats)),
        ("model: decode_jpeg + resize, in process", _best_ms(
            lambda: model.run("serving_default", tensors, ["y"]), repeats)),
        ("encode the 1×3 answer", _best_ms(lambda: response.encode_predict_response(
            {"y": np.zeros((1, 3), np.float32)}, True), repeats)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    print("| stage | general path ms | dense path ms | speed-up |\n|---|---|---|---|")
    for spec in (models.MOBILENET_V2, models.MLP):
        for name, before, after in _request_rows(spec, args.repeats):
            print(f"| {name} | {before:.3f} | {after:.3f} | {before / after:.1f}× |")
    print("\n| response | ms |\n|---|---|")
    for name, cost in _encode_rows(args.repeats):
        print(f"| {name} | {cost:.3f} |")
    print("\n| b64 JPEG request, batch 1 | ms |\n|---|---|")
    for name, cost in _b64_rows(args.repeats):
        print(f"| {name} | {cost:.3f} |" if cost else f"| {name} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
