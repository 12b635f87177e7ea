"""One JSON value (a scalar or nested lists) → one numpy tensor of a signature's dtype.

TF Serving's rules (`json_tensor.cc`): the shape comes from the nesting, reading the first element
of each level; integer dtypes take only integers that fit them, while float and double take any
number, rounded as C casts a double (to ±inf past float's range). The common case, a dense and
well-typed value, is checked level by level with C-speed builtins and converted by one `np.array`
call; anything else is walked value by value in TF Serving's order, which raises its exact error
or converts what only that walk handles (b64 objects, lone surrogates).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from berth_server import errors
from berth_server.rest.json_body import decode_b64, json_type_name, to_bytes
from berth_server.rest.json_body import value_to_string as _show

# tensorflow.core.framework.types_pb2 enum values.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT32, DT_UINT64 = 9, 10, 22, 23

# TF's DataTypeString for enum values 1..33.
_DTYPE_NAMES = (
    "float double int32 uint8 int16 int8 string complex64 int64 bool qint8 quint8 qint32 bfloat16 "
    "qint16 quint16 uint16 complex128 half resource variant uint32 uint64 float8_e5m2 "
    "float8_e4m3fn float8_e4m3fnuz float8_e4m3b11fnuz float8_e5m2fnuz int4 uint4 int2 uint2 "
    "float4_e2m1fn").split()

_NUMPY: dict[int, type] = {
    DT_FLOAT: np.float32, DT_DOUBLE: np.float64, DT_INT32: np.int32, DT_UINT8: np.uint8,
    DT_INT16: np.int16, DT_INT8: np.int8, DT_INT64: np.int64, DT_BOOL: np.bool_,
    DT_UINT32: np.uint32, DT_UINT64: np.uint64, DT_STRING: object,
}
# Integers each dtype takes (rapidjson IsInt/IsInt64/IsUint/IsUint64). Narrow types take any
# int32 and wrap when the tensor is built, as TF Serving's int_val does.
_INT_RANGE: dict[int, tuple[int, int]] = {
    DT_INT32: (-(2**31), 2**31 - 1), DT_INT16: (-(2**31), 2**31 - 1),
    DT_INT8: (-(2**31), 2**31 - 1), DT_UINT8: (-(2**31), 2**31 - 1),
    DT_INT64: (-(2**63), 2**63 - 1), DT_UINT32: (0, 2**32 - 1), DT_UINT64: (0, 2**64 - 1),
}
_MAX_RANK = 64
_FLOATS = frozenset((DT_FLOAT, DT_DOUBLE))


def dtype_name(dtype: int) -> str:
    """TF's `DataTypeString`, as TF Serving prints dtypes in messages."""
    if 1 <= dtype <= len(_DTYPE_NAMES):
        return _DTYPE_NAMES[dtype - 1]
    return f"unknown dtype enum ({dtype})"


def to_tensor(value: Any, dtype: int) -> np.ndarray:
    """One JSON value (scalar or nested list) as a tensor of `dtype`."""
    tensor = try_dense(value, dtype)
    if tensor is not None:
        return tensor
    shape = _shape_of(value)
    leaves: list[Any] = []
    _fill(value, 0, shape, dtype, leaves)
    if dtype not in _NUMPY:  # No leaves, so no conversion was attempted.
        raise errors.unimplemented(f"Conversion of JSON Value: {_show(value)} to type: "
                                   f"{dtype_name(dtype)}")
    return _build(leaves, shape, dtype)


def _shape_of(value: Any) -> list[int]:
    """The shape read from the first element of each level, within numpy's rank limit (TF's is
    254), which also bounds the recursion of the value-by-value walk."""
    shape = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    if len(shape) > _MAX_RANK:
        raise errors.invalid_argument(
            f"Shape has {len(shape)} dimensions which is over the limit of {_MAX_RANK}")
    return shape


def try_dense(value: Any, dtype: int) -> np.ndarray | None:
    """The fast path: a dense, well-typed value as a tensor, or None to take the exact path."""
    if dtype not in _NUMPY:
        return None
    shape = _shape_of(value)
    leaves = [value]
    for size in shape:
        if len(leaves) > 1 and (set(map(type, leaves)) != {list}
                                or set(map(len, leaves)) != {size}):
            return None
        leaves = list(itertools.chain.from_iterable(leaves))
    if not leaves:
        return _build(leaves, shape, dtype)
    kinds = set(map(type, leaves))
    array: np.ndarray
    if dtype in _FLOATS:
        if not kinds <= {float, int}:
            return None
        return _floats(leaves, dtype).reshape(shape)
    if dtype in _INT_RANGE:
        if kinds != {int}:
            return None
        try:
            array = np.array(leaves, dtype=np.uint64 if dtype == DT_UINT64 else np.int64)
        except OverflowError:
            return None
        if not _within(leaves, array, *_INT_RANGE[dtype]):
            return None
    elif dtype == DT_BOOL and kinds == {bool}:
        array = np.array(leaves, dtype=np.bool_)
    elif dtype == DT_STRING and kinds == {str}:
        try:
            return _build([text.encode() for text in leaves], shape, dtype)
        except UnicodeEncodeError:
            return None
    else:
        return None
    return array.astype(_NUMPY[dtype], copy=False).reshape(shape)


def from_numbers(floats: np.ndarray, ints: np.ndarray | None, dtype: int) -> np.ndarray | None:
    """`try_dense` of a dense array of numbers already read into numpy (`dense_body`): `floats`
    as doubles, `ints` as int64 when every number is an integer literal. None where `try_dense`
    would find a number the dtype refuses, or the dtype takes no numbers."""
    if dtype in _FLOATS:
        if dtype == DT_DOUBLE:
            return floats.copy()
        with np.errstate(over="ignore"):
            return floats.astype(np.float32)
    if dtype not in _INT_RANGE or ints is None:
        return None
    low, high = _INT_RANGE[dtype]
    if not ((ints >= low) & (ints <= high)).all():
        return None
    return ints.astype(_NUMPY[dtype])


def _within(leaves: list[Any], array: np.ndarray, low: float, high: float) -> bool:
    """Range check: Python's min/max are cheaper on short lists, numpy on long ones."""
    if len(leaves) <= 64:
        return bool(low <= min(leaves) and max(leaves) <= high)
    return bool(((array >= low) & (array <= high)).all())


def _floats(numbers: list[float | int], dtype: int) -> np.ndarray:
    """Numbers as rapidjson's `GetDouble`/`GetFloat` give them: an integer becomes a double
    first, and a double beyond float's range becomes ±inf (without numpy's overflow warning)."""
    array = np.array(numbers, dtype=np.float64)
    if dtype == DT_DOUBLE:
        return array
    with np.errstate(over="ignore"):
        return array.astype(np.float32)


def _build(leaves: list[Any], shape: list[int], dtype: int) -> np.ndarray:
    if dtype in _FLOATS:
        return _floats(leaves, dtype).reshape(shape)
    if dtype == DT_STRING:
        tensor = np.empty(len(leaves), dtype=object)
        tensor[:] = leaves
        return tensor.reshape(shape)
    if dtype in _INT_RANGE and dtype != DT_UINT64:
        return np.array(leaves, dtype=np.int64).astype(_NUMPY[dtype]).reshape(shape)
    return np.array(leaves, dtype=_NUMPY[dtype]).reshape(shape)


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list[Any]) -> None:
    """TF Serving's FillTensorProto: depth-first, raising the first error it meets."""
    rank = len(shape)
    if type(value) is not list:
        if level != rank:
            raise errors.invalid_argument(
                f"JSON Value: {_show(value)} found at incorrect level: {level + 1} in the JSON "
                f"DOM. Expected at level: {rank}")
        if type(value) is dict:
            if dtype != DT_STRING:
                raise _type_error(value, dtype)
            out.append(decode_b64(value))
        else:
            out.append(_leaf(value, dtype))
        return
    if level >= rank:
        raise errors.invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise errors.invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: "
            f"{shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _leaf(value: Any, dtype: int) -> Any:
    kind = type(value)
    if dtype in _FLOATS:
        if kind is float or kind is int:
            return value
    elif dtype in _INT_RANGE:
        low, high = _INT_RANGE[dtype]
        if kind is int and low <= value <= high:
            return value
    elif dtype == DT_BOOL:
        if kind is bool:
            return value
    elif dtype == DT_STRING:
        if kind is str:
            return to_bytes(value)
    else:
        raise errors.unimplemented(
            f"Conversion of JSON Value: {_show(value)} to type: {dtype_name(dtype)}")
    raise _type_error(value, dtype)


def _type_error(value: Any, dtype: int) -> errors.ServingError:
    return errors.invalid_argument(
        f"JSON Value: {_show(value)} Type: {json_type_name(value)} is not of expected type: "
        f"{dtype_name(dtype)}")
