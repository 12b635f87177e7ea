"""Replays `assets.extra/tf_serving_warmup_requests` before a version becomes AVAILABLE.

TF Serving's format and limits: a TFRecord of PredictionLog, at most 1000 records, each replayed
`num_request_iterations` times; a missing file is fine, a damaged one fails the load.
"""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from berth_server import errors
from berth_server.servables import example_inputs, inference, tensor_protos
from berth_server.servables.servable import Servable

log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_RECORDS = 1000


def replay(model: Servable, version_dir: Path, *, iterations: int = 1) -> int:
    """Run every warmup record `iterations` times; returns how many records were read."""
    path = version_dir / WARMUP_FILE
    if not path.exists():
        log.info("No warmup data file found at %s", path)
        return 0
    count = 0
    try:
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            count += 1
            if count > MAX_RECORDS:
                raise errors.invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}")
            plans = _plans(model, _parse(record))
            for _ in range(max(1, iterations)):
                for plan in plans:
                    model.run(plan.signature_name, plan.inputs, plan.output_aliases)
    except tf.errors.DataLossError as error:
        raise errors.ServingError(
            errors.Code.DATA_LOSS,
            f"Error reading warmup data at {path}: {error.message}. "
            "Please verify your warmup data is in TFRecord format.") from None
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.",
             version_dir, count)
    return count


def _parse(record: bytes) -> prediction_log_pb2.PredictionLog:
    try:
        return prediction_log_pb2.PredictionLog.FromString(record)
    except Exception:  # protobuf raises DecodeError; anything else is just as unparseable
        raise errors.invalid_argument("Failed to parse PredictionLog from warmup record") from None


def _plans(model: Servable, entry: prediction_log_pb2.PredictionLog) -> list[inference.Plan]:
    kind = entry.WhichOneof("log_type")
    signatures = model.signatures
    if kind == "predict_log":
        request = entry.predict_log.request
        inputs = {k: tensor_protos.to_ndarray(v) for k, v in request.inputs.items()}
        key = inference.signature_key(request.model_spec.signature_name)
        return [inference.plan_predict(key, signatures.get(key), inputs,
                                       list(request.output_filter))]
    if kind == "classify_log":
        request = entry.classify_log.request
        return [inference.plan_classify(signatures, request.model_spec.signature_name,
                                        example_inputs.serialized_examples(request.input))]
    if kind == "regress_log":
        request = entry.regress_log.request
        return [inference.plan_regress(signatures, request.model_spec.signature_name,
                                       example_inputs.serialized_examples(request.input))]
    if kind == "multi_inference_log":
        request = entry.multi_inference_log.request
        examples = example_inputs.serialized_examples(request.input)
        planners = {inference.CLASSIFY_METHOD: inference.plan_classify,
                    inference.REGRESS_METHOD: inference.plan_regress}
        return [planners[task.method_name](signatures, task.model_spec.signature_name, examples)
                for task in request.tasks if task.method_name in planners]
    raise errors.unimplemented(f"Unsupported log_type for warmup: {kind}")
