"""Response bodies of the REST API: predict outputs, classify and regress results.

Numbers are written by orjson straight from numpy, at the tensor's own precision: the shortest
text that round-trips, so float32 0.1 is `0.1` (not 0.10000000149011612) and whole numbers keep
`.0` (`3.0`). Non-finite values are written as TF Serving writes them, `NaN`, `Infinity` and
`-Infinity`, spliced into orjson's output where it wrote `null`.

Differences from TF Serving that leave the parsed JSON equal: the body is compact, where TF
Serving pretty-prints with a 4-space indent; TF Serving tries printf `%g` before falling back to
9/17 digits, so it writes `9e+06` for 9000000.0 and `0.123456791` for float32 0.12345679, where
the text here is `9000000.0` and `0.12345679` (the same float32 either way).
Strings that are not valid UTF-8 (outputs without the `_bytes` suffix) have the bad bytes replaced
by U+FFFD: TF Serving copies them raw, which makes its body invalid JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from berth_server import errors
from berth_server.rest.json_body import dumps

# dtypes TF Serving's AddSingleValueAndAdvance writes; others are "Failed to write ...".
_NATIVE = frozenset(np.dtype(name) for name in (
    "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64", "bool"))
# numpy dtype names whose TF DataTypeString differs.
_TF_NAMES = {"float16": "half", "float32": "float", "float64": "double", "bytes": "string"}


def encode_predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """`{"predictions": ...}` for a row-format request, else `{"outputs": ...}`."""
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    if row_format:
        return dumps({"predictions": _predictions(outputs)})
    if len(outputs) == 1:
        ((name, tensor),) = outputs.items()
        return dumps({"outputs": _jsonable(name, tensor)})
    return dumps({"outputs": {name: _jsonable(name, tensor) for name, tensor in outputs.items()}})


def encode_classify_response(results: Sequence[Sequence[tuple[str | bytes, float]]]) -> bytes:
    """`{"results": [[[label, score], ...], ...]}`, one list per example; scores are float32."""
    if not results:
        raise errors.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    return dumps({"results": [[[_text(label), _score(score)] for label, score in classes]
                              for classes in results]})


def encode_regress_response(values: Sequence[float]) -> bytes:
    """`{"results": [v, ...]}`, one float32 value per example."""
    if not values:
        raise errors.invalid_argument("Cannot convert empty RegressionResults to JSON")
    return dumps({"results": _jsonable("results", np.asarray(values, dtype=np.float32))})


def _predictions(outputs: Mapping[str, np.ndarray]) -> Any:
    """One entry per batch row; outputs with a zero batch give `[]`, as in TF Serving."""
    batch_size = -1
    for name, tensor in outputs.items():
        if tensor.ndim == 0:
            raise errors.invalid_argument(f"Tensor name: {name} has no shape information ")
        if batch_size >= 0 and batch_size != tensor.shape[0]:
            raise errors.invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: {tensor.shape[0]} expecting: "
                f"{batch_size}")
        batch_size = tensor.shape[0]
    if len(outputs) == 1:
        ((name, tensor),) = outputs.items()
        return _jsonable(name, tensor)
    columns = {name: _rows(name, tensor) for name, tensor in outputs.items()}
    return [{name: rows[index] for name, rows in columns.items()} for index in range(batch_size)]


def _rows(name: str, tensor: np.ndarray) -> list[Any]:
    value = _jsonable(name, tensor)
    if isinstance(value, orjson.Fragment):
        return [_jsonable(name, row) for row in tensor]
    return list(value)


def _jsonable(name: str, tensor: np.ndarray) -> Any:
    """What orjson writes as this tensor: the array itself where it can."""
    dtype = tensor.dtype
    if dtype in _NATIVE:
        if dtype.kind == "f" and not np.isfinite(tensor).all():
            return _non_finite(tensor)
        return tensor[()] if tensor.ndim == 0 else np.ascontiguousarray(tensor)
    if dtype.kind in "OSU":
        return _strings(tensor, as_b64=name.endswith("_bytes"))
    if tensor.size == 0:
        return tensor.tolist()
    raise errors.invalid_argument(
        f"Failed to write JSON value for tensor type: {_TF_NAMES.get(dtype.name, dtype.name)}")


def _non_finite(tensor: np.ndarray) -> orjson.Fragment:
    """orjson writes `null` for each non-finite value, in C order: put TF's tokens there."""
    pieces = dumps(tensor[()] if tensor.ndim == 0 else np.ascontiguousarray(tensor)).split(b"null")
    tokens = [_token(value) for value in tensor[~np.isfinite(tensor)].tolist()]
    spliced = [pieces[0]]
    for token, piece in zip(tokens, pieces[1:], strict=True):
        spliced += (token, piece)
    return orjson.Fragment(b"".join(spliced))


def _token(value: float) -> bytes:
    return b"NaN" if value != value else (b"Infinity" if value > 0 else b"-Infinity")


def _score(value: float) -> Any:
    score = np.float32(value)
    return score if np.isfinite(score) else orjson.Fragment(_token(float(score)))


def _strings(tensor: np.ndarray, *, as_b64: bool) -> Any:
    convert = _b64 if as_b64 else _text
    flat = np.empty(tensor.size, dtype=object)
    flat[:] = [convert(value) for value in tensor.ravel().tolist()]
    return flat.reshape(tensor.shape).tolist()


def _b64(value: bytes | str) -> dict[str, str]:
    raw = value.encode() if isinstance(value, str) else value
    return {"b64": base64.b64encode(raw).decode("ascii")}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
