"""Predict request JSON → named tensors: the `instances` (row) and `inputs` (columnar) layouts.

Follows TF Serving's `json_tensor.cc`, messages included. Row-format errors are wrapped as TF
Serving wraps them, status code text and all (`Failed to process element: 0 of 'instances' list.
Error: INVALID_ARGUMENT: ...`), so an unsupported dtype there is INVALID_ARGUMENT, while in
columnar format it is UNIMPLEMENTED.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from berth_server import errors
from berth_server.rest import dense_body, json_body, json_tensor
from berth_server.rest.json_body import format_error, is_b64_object
from berth_server.rest.json_body import value_to_string as _show


@dataclasses.dataclass(frozen=True, slots=True)
class PredictInputs:
    """A decoded predict body. `row_format` (instances) selects the response layout."""

    tensors: dict[str, np.ndarray]
    row_format: bool


def decode_predict_request(body: dict[str, Any], input_dtypes: Mapping[str, int], *,
                           signature_name: str) -> PredictInputs:
    """Convert a parsed predict body, given the inputs (alias → DataType enum) of the signature
    its `signature_name` names (`json_body.signature_name_of`)."""
    if not input_dtypes:
        raise errors.invalid_argument(
            f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    if "instances" in body:
        if "inputs" in body:
            raise format_error(body, "Not formatted correctly expecting only one of 'inputs' or "
                                     "'instances' keys to exist ")
        rows = body["instances"]
        if type(rows) is not list:
            raise format_error(body, "Excepting 'instances' to be an list/array")
        if not rows:
            raise format_error(body, "No values in 'instances' array")
        return PredictInputs(_from_instances(rows, input_dtypes), True)
    if "inputs" in body:
        return PredictInputs(_from_inputs(body["inputs"], input_dtypes), False)
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")


ParsedBody = dense_body.DenseBody | dict[str, Any]


def parse_predict_body(body: bytes) -> ParsedBody:
    """The body read straight into numpy when it is one dense array of numbers (`dense_body`),
    else as `json_body.parse_body` reads it (with its errors)."""
    return dense_body.parse(body) or json_body.parse_body(body)


def signature_name_of(parsed: ParsedBody) -> str:
    """The body's `signature_name`, "" when absent (`json_body.signature_name_of`)."""
    if isinstance(parsed, dense_body.DenseBody):
        return parsed.signature_name
    return json_body.signature_name_of(parsed)


def decode_parsed_request(parsed: ParsedBody, body: bytes, input_dtypes: Mapping[str, int], *,
                          signature_name: str) -> PredictInputs:
    """`decode_predict_request` of what `parse_predict_body` read from `body`. A dense body that
    the signature does not take as one tensor is parsed again, for the general path's checks
    and messages."""
    if isinstance(parsed, dense_body.DenseBody):
        decoded = decode_dense_request(parsed, input_dtypes)
        if decoded is not None:
            return decoded
        parsed = json_body.parse_body(body)
    return decode_predict_request(parsed, input_dtypes, signature_name=signature_name)


def decode_dense_request(body: dense_body.DenseBody, input_dtypes: Mapping[str, int],
                         ) -> PredictInputs | None:
    """`decode_predict_request` of a body read by `dense_body`, or None where that would not
    convert the array as one dense tensor (it then raises the error, or walks the values)."""
    if len(input_dtypes) != 1:
        return None
    ((name, dtype),) = input_dtypes.items()
    tensor = json_tensor.from_numbers(body.floats, body.ints, dtype)
    if tensor is None:
        return None
    return PredictInputs({name: tensor}, body.key == "instances")


def _from_inputs(value: Any, dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    if type(value) is not dict or is_b64_object(value):
        if len(dtypes) > 1:
            raise errors.invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map")
        ((name, dtype),) = dtypes.items()
        return {name: json_tensor.to_tensor(value, dtype)}
    tensors = {}
    for name, dtype in dtypes.items():
        if name not in value:
            raise errors.invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = json_tensor.to_tensor(value[name], dtype)
    return tensors


def _from_instances(rows: list[Any], dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """TF Serving converts row by row and then checks the rows agree; a batch that converts as
    one dense tensor passes exactly those checks, so only a failing batch is walked per row."""
    if type(rows[0]) is dict and not is_b64_object(rows[0]):
        return _from_named_rows(rows, dtypes)
    if len(dtypes) > 1:
        raise errors.invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map")
    ((name, dtype),) = dtypes.items()
    batch = json_tensor.try_dense(rows, dtype)
    if batch is not None:
        return {name: batch}
    tensors: list[np.ndarray] = []
    for index, row in enumerate(rows):
        if type(row) is dict and not is_b64_object(row):
            raise errors.invalid_argument(
                f"Expecting value/list but got object at item {index} of input list")
        try:
            _append_row(tensors, json_tensor.to_tensor(row, dtype))
        except errors.ServingError as error:
            raise errors.invalid_argument(f"Failed to process element: {index} of 'instances' "
                                          f"list. Error: {_status(error)}") from None
    return {name: np.stack(tensors)}


def _from_named_rows(rows: list[Any], dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    names = dtypes.keys()
    if "b64" not in names and all(type(row) is dict and row.keys() == names for row in rows):
        fast: dict[str, np.ndarray] = {}
        for name, dtype in dtypes.items():
            tensor = json_tensor.try_dense([row[name] for row in rows], dtype)
            if tensor is None:
                break
            fast[name] = tensor
        else:
            return fast
    columns: dict[str, list[np.ndarray]] = {name: [] for name in dtypes}
    for index, row in enumerate(rows):
        if type(row) is not dict or is_b64_object(row):
            raise errors.invalid_argument(
                f"Expecting object but got list at item {index} of input list")
        for key, item in row.items():
            try:
                if key not in dtypes:
                    raise errors.invalid_argument(f"JSON object: does not have named input: {key}")
                _append_row(columns[key], json_tensor.to_tensor(item, dtypes[key]))
            except errors.ServingError as error:
                raise errors.invalid_argument(
                    f"Failed to process element: {index} key: {key} of 'instances' list. "
                    f"Error: {_status(error)}") from None
        if row.keys() != names:
            raise errors.invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{_show(row)} keys must be equal to: {','.join(sorted(names))}")
    return {name: np.stack(tensors) for name, tensors in columns.items()}


def _append_row(tensors: list[np.ndarray], tensor: np.ndarray) -> None:
    """Every row of one input must match the first row's size, then its shape."""
    if tensors and tensors[0].size != tensor.size:
        raise errors.invalid_argument(
            f"Expecting tensor size: {tensors[0].size} but got: {tensor.size}")
    if tensors and tensors[0].shape != tensor.shape:
        raise errors.invalid_argument(
            f"Expecting shape {_shape_text(tensors[0])} but got: {_shape_text(tensor)}")
    tensors.append(tensor)


def _shape_text(tensor: np.ndarray) -> str:
    return "[" + ",".join(map(str, tensor.shape)) + "]"


def _status(error: errors.ServingError) -> str:
    """absl::Status::ToString, which TF Serving embeds when it wraps a row's error."""
    return f"{error.code.name}: {error.message}"
