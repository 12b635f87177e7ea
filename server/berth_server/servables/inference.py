"""Predict, Classify and Regress on one model version: validation and result shaping.

Transport-independent and pure: gRPC, REST and warmup decode their requests to numpy, ask for
a `Plan` (which signature, which inputs and outputs), run it however they run models, and shape
the outputs here. So behaviour and error texts are identical on every path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from berth_server import errors

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

Signatures = Mapping[str, meta_graph_pb2.SignatureDef]
Outputs = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Plan:
    """One signature run: its key, inputs by alias and the output aliases to fetch."""

    signature_name: str
    inputs: Mapping[str, np.ndarray]
    output_aliases: Sequence[str]


def signature_key(name: str) -> str:
    """The signature a request names: `serving_default` when it names none."""
    return name or DEFAULT_SIGNATURE


def plan_predict(key: str, signature: meta_graph_pb2.SignatureDef | None,
                 inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()) -> Plan:
    """Check `inputs` against the signature found under `key` (None: there is none)."""
    if signature is None:
        raise errors.failed_precondition(f'Serving signature key "{key}" not found.')
    defaults = {alias: tf.make_ndarray(value) for alias, value in signature.defaults.items()
                if alias not in inputs and alias in signature.inputs}
    if defaults:  # TF2 signatures may declare values for inputs a request leaves out
        inputs = {**inputs, **defaults}
    _check_inputs(signature, inputs)
    return Plan(key, inputs, _output_aliases(signature, output_filter))


def check_aliases(signature: meta_graph_pb2.SignatureDef, sent: Collection[str]) -> None:
    """Every signature input sent (or given a default by the signature), none extra.

    Cheap, so a transport calls it before decoding a single tensor: junk inputs beside the
    real ones cost nothing to refuse.
    """
    sent = set(sent) | {alias for alias in signature.defaults if alias in signature.inputs}
    expected = set(signature.inputs)
    if sent != expected:
        extra, missing = sorted(sent - expected), sorted(expected - sent)
        raise errors.invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")


def _check_inputs(signature: meta_graph_pb2.SignatureDef, inputs: Mapping[str, np.ndarray]) -> None:
    """Every signature input present, none extra, each of the signature's dtype."""
    check_aliases(signature, inputs.keys())
    if all(_accepts(info.dtype, inputs[alias].dtype) for alias, info in signature.inputs.items()):
        return
    for index, (alias, info) in enumerate(sorted(signature.inputs.items())):  # the first wrong
        got = inputs[alias].dtype
        if not _accepts(info.dtype, got):
            got_name = "string" if got.kind in "SOU" else tf.dtypes.as_dtype(got).name
            raise errors.invalid_argument(
                f"Expects arg[{index}] to be {tf.dtypes.as_dtype(info.dtype).name} but "
                f"{got_name} is provided (input '{alias}')")


def _accepts(enum: int, got: np.dtype[Any]) -> bool:
    wants_text, want = _accepted_dtype(enum)
    is_text = got.kind in "SOU"
    return wants_text == is_text and (is_text or got == want)


@functools.cache
def _accepted_dtype(enum: int) -> tuple[bool, np.dtype[Any] | None]:
    """A signature dtype as (is it a string, the numpy dtype of its values): read on every
    request, where TensorFlow's DType lookups would cost more than the rest of the check."""
    want = tf.dtypes.as_dtype(enum)
    if want == tf.string:
        return True, None
    return False, np.dtype(want.as_numpy_dtype)


def _output_aliases(signature: meta_graph_pb2.SignatureDef,
                    output_filter: Sequence[str]) -> list[str]:
    if not output_filter:
        return sorted(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise errors.invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def plan_classify(signatures: Signatures, signature_name: str, examples: Sequence[bytes], *,
                  check_method: bool = False) -> Plan:
    signature = _example_signature(signatures, signature_name, CLASSIFY_METHOD, check_method)
    outputs = [k for k in ("classes", "scores") if k in signature.outputs]
    if not outputs or len(signature.outputs) > 2:
        raise errors.invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}")
    return _examples_plan(signature_key(signature_name), signature, examples, outputs)


def classify_result(outputs: Outputs, num_examples: int) -> list[list[tuple[str, float]]]:
    """One list of (label, score) per example, in input order; missing parts are "" / 0."""
    for name, tensor in outputs.items():
        if tensor.ndim != 2 or tensor.shape[0] != num_examples:
            raise errors.invalid_argument(
                f"Expected {name} Tensor shape: [batch_size num_classes] but got "
                f"{list(tensor.shape)}")
    classes, scores = outputs.get("classes"), outputs.get("scores")
    width = next(iter(outputs.values())).shape[1]
    return [[(_text(classes[row, col]) if classes is not None else "",
              float(scores[row, col]) if scores is not None else 0.0)
             for col in range(width)] for row in range(num_examples)]


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def plan_regress(signatures: Signatures, signature_name: str, examples: Sequence[bytes], *,
                 check_method: bool = False) -> Plan:
    signature = _example_signature(signatures, signature_name, REGRESS_METHOD, check_method)
    if list(signature.outputs) != ["outputs"]:
        raise errors.invalid_argument("Expected one output Tensor named 'outputs'.")
    return _examples_plan(signature_key(signature_name), signature, examples, ["outputs"])


def regress_result(outputs: Outputs, num_examples: int) -> list[float]:
    values = outputs["outputs"]
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.shape[0] != num_examples:
        raise errors.invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(outputs['outputs'].shape)}")
    return [float(v) for v in values]


def _example_signature(signatures: Signatures, name: str, method: str,
                       check_method: bool) -> meta_graph_pb2.SignatureDef:
    signature = signatures.get(signature_key(name))
    if signature is None:
        raise errors.invalid_argument(f"No signature was found with the name: "
                                      f"{signature_key(name)}")
    if check_method and signature.method_name != method:
        kind = "classification" if method == CLASSIFY_METHOD else "regression"
        raise errors.invalid_argument(f"Expected {kind} signature method_name to be {method}. "
                                      f"Was: {signature.method_name}")
    if len(signature.inputs) != 1:
        raise errors.invalid_argument("Expected one input Tensor.")
    return signature


def _examples_plan(key: str, signature: meta_graph_pb2.SignatureDef,
                   examples: Sequence[bytes], outputs: list[str]) -> Plan:
    if not examples:
        raise errors.invalid_argument("Input is empty.")
    (alias, info), = signature.inputs.items()
    if info.dtype != tf.string.as_datatype_enum:
        raise errors.invalid_argument(
            f"Expected input '{alias}' of the signature to be DT_STRING serialized tf.Examples, "
            f"got {tf.dtypes.as_dtype(info.dtype).name}")
    batch = np.empty(len(examples), dtype=object)
    batch[:] = list(examples)
    return Plan(key, {alias: batch}, outputs)
