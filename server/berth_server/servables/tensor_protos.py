"""TensorProto ↔ numpy for the gRPC path.

Inputs may use typed fields or `tensor_content` (clients' `tf.make_tensor_proto` sends the
latter). Outputs use the typed repeated fields by default, as TF Serving does, or
`tensor_content` with --enable_serialization_as_tensor_content.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sized

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from berth_server import errors

# dtype → the typed repeated field TF Serving's AsProtoField fills.
_TYPED_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}

# Typed fields that hold a dtype's bits as another number type: half and bfloat16 as their
# 16 bits in half_val, complex numbers as (real, imaginary) pairs.
_BIT_FIELDS: dict[int, tuple[str, type[np.generic]]] = {
    types_pb2.DT_HALF: ("half_val", np.uint16),
    types_pb2.DT_BFLOAT16: ("half_val", np.uint16),
    types_pb2.DT_COMPLEX64: ("scomplex_val", np.float32),
    types_pb2.DT_COMPLEX128: ("dcomplex_val", np.float64),
}


# Fixed-width dtypes whose `tensor_content` numpy reads directly (little-endian, as TF writes it).
_CONTENT_DTYPES: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_BOOL: np.dtype("?"),
}
_NATIVE_DTYPES: dict[np.dtype, np.dtype] = {
    dtype: dtype if dtype.isnative else dtype.newbyteorder("=")
    for dtype in _CONTENT_DTYPES.values()}

# TF fills a tensor whose typed values are fewer than its shape (zeros, or the last value
# repeated): a few bytes on the wire could ask for terabytes. A fill may grow a tensor only to
# the size a request could carry (--max_request_size_bytes), and to this without a limit.
MAX_FILLED_BYTES = 1 << 28


def to_ndarray(proto: tensor_pb2.TensorProto, *,
               max_fill_bytes: int = MAX_FILLED_BYTES) -> np.ndarray:
    """Decode a request tensor; a malformed one is INVALID_ARGUMENT, never a crash."""
    if proto.dtype == types_pb2.DT_INVALID:
        raise errors.invalid_argument("tensor has an invalid dtype (DT_INVALID)")
    if proto.tensor_shape.unknown_rank:  # TensorFlow's Tensor::FromProto refuses these too
        raise errors.invalid_argument("Unable to parse tensor proto: a tensor must have a known "
                                      "rank")
    fast = _from_content(proto)
    if fast is not None:
        return fast
    _check_fill(proto, max_fill_bytes)
    try:
        return tf.make_ndarray(proto)
    except MemoryError:
        raise errors.ServingError(errors.Code.RESOURCE_EXHAUSTED,
                                  "Unable to parse tensor proto: out of memory") from None
    except Exception as error:  # ValueError, OverflowError, KeyError (DT_RESOURCE), OpError…
        raise errors.invalid_argument(f"Unable to parse tensor proto: {error!r}") from None


def _from_content(proto: tensor_pb2.TensorProto) -> np.ndarray | None:
    """The common client encoding (`tf.make_tensor_proto`) without TensorFlow's slower path."""
    dtype = _CONTENT_DTYPES.get(proto.dtype)
    if dtype is None or proto.tensor_shape.unknown_rank:
        return None
    content = proto.tensor_content  # each read of a bytes field is a copy: read it once
    if not content:
        return None
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if len(content) != math.prod(shape) * dtype.itemsize or any(size < 0 for size in shape):
        return None  # let make_ndarray report it
    values = np.frombuffer(content, dtype)
    native = _NATIVE_DTYPES[dtype]
    return (values if native is dtype else values.astype(native)).reshape(shape)


def _check_fill(proto: tensor_pb2.TensorProto, max_fill_bytes: int) -> int:
    """The bytes `proto` would be filled with; raises when over `max_fill_bytes`."""
    needed, sent = _fill(proto)
    if needed > max_fill_bytes:
        raise errors.invalid_argument(
            f"Unable to parse tensor proto: shape {[d.size for d in proto.tensor_shape.dim]} "
            f"needs {needed // _item_bytes(proto)} values but {sent} were sent; a tensor over "
            f"{max_fill_bytes} bytes must carry its values")
    return needed


def check_fills(protos: Iterable[tensor_pb2.TensorProto], max_fill_bytes: int) -> None:
    """A request's fills together may grow it only as far as one tensor's may: the bound is
    per request, so many small asks cannot add up to what one large one is refused."""
    needed = sum(_check_fill(proto, max_fill_bytes) for proto in protos)
    if needed > max_fill_bytes:
        raise errors.invalid_argument(
            f"Unable to parse tensor proto: the request's tensors need {needed} bytes filled "
            f"from fewer values than their shapes; a request over {max_fill_bytes} bytes must "
            "carry its values")


def _fill(proto: tensor_pb2.TensorProto) -> tuple[int, int]:
    """(bytes TensorFlow would fill beyond the values sent, values sent); 0 bytes when the
    values cover the shape or come as `tensor_content` (which must match it exactly)."""
    if proto.tensor_content or proto.tensor_shape.unknown_rank:
        return 0, 0
    elements = 1
    for dim in proto.tensor_shape.dim:
        if dim.size < 0:
            raise errors.invalid_argument(f"Unable to parse tensor proto: negative dimension "
                                          f"{dim.size}")
        elements *= dim.size
    sent = max((len(values) for _, values in proto.ListFields()
                if isinstance(values, Sized) and not isinstance(values, (bytes, str))),
               default=0)
    return (elements * _item_bytes(proto) if elements > sent else 0), sent


def _item_bytes(proto: tensor_pb2.TensorProto) -> int:
    if proto.dtype == types_pb2.DT_STRING:
        return 8
    try:
        return int(tf.as_dtype(proto.dtype).size)
    except TypeError:
        return 8


def to_proto(array: np.ndarray, *, as_tensor_content: bool = False) -> tensor_pb2.TensorProto:
    """Encode a result tensor the way TF Serving does."""
    proto = tensor_pb2.TensorProto()
    fill_proto(proto, array, as_tensor_content=as_tensor_content)
    return proto


def fill_proto(proto: tensor_pb2.TensorProto, array: np.ndarray, *,
               as_tensor_content: bool = False) -> None:
    """`to_proto` into an empty TensorProto the caller holds, such as a response's map entry:
    building in place spares the copy that `CopyFrom` of a finished tensor would make."""
    dtype = _DATATYPE_ENUM.get(array.dtype)
    if dtype is None:
        dtype = tf.as_dtype(array.dtype).as_datatype_enum
        if array.dtype.kind not in "SU":  # fixed-width text has a dtype per width: not kept
            _DATATYPE_ENUM[array.dtype] = dtype
    proto.dtype = dtype
    shape = proto.tensor_shape
    shape.SetInParent()  # a scalar's shape is present and empty, as TF writes it
    dims = shape.dim
    for size in array.shape:
        dims.add().size = size
    field = _TYPED_FIELD.get(dtype)
    bits = _BIT_FIELDS.get(dtype)
    if (field is None and bits is None) or (as_tensor_content and dtype != types_pb2.DT_STRING):
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    elif dtype == types_pb2.DT_STRING:
        proto.string_val.extend(array.ravel().tolist())
    else:
        flat = np.ascontiguousarray(array).ravel()
        name, values = (bits[0], flat.view(bits[1])) if bits else (str(field), flat)
        if values.size >= _PACKED_FROM_NUMPY_MIN_SIZE and name in _RAW_PACKED:
            proto.MergeFromString(_raw_packed(name, values))
        else:
            getattr(proto, name).extend(values.tolist())


# numpy dtype → TensorFlow's DataType enum, filled as results meet dtypes (`tf.as_dtype` costs
# about a microsecond a call; results have a handful of dtypes).
_DATATYPE_ENUM: dict[np.dtype, int] = {}


# Fields whose packed wire bytes are the values' own little-endian bytes (a bool's 0 or 1 byte is
# its varint). From this many values they are written straight from numpy, with no Python number
# per value: 7x faster for 16M floats than extending from a list, and no list to hold. Integer
# varints stay on the list path, which numpy does not beat.
_PACKED_FROM_NUMPY_MIN_SIZE = 256
_RAW_PACKED: dict[str, tuple[int, np.dtype]] = {
    name: (tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name[name].number, np.dtype(wire))
    for name, wire in (("float_val", "<f4"), ("double_val", "<f8"), ("scomplex_val", "<f4"),
                       ("dcomplex_val", "<f8"), ("bool_val", "u1"))}


def _raw_packed(field: str, values: np.ndarray) -> bytes:
    """The wire bytes of packed repeated `field` holding `values`."""
    number, wire = _RAW_PACKED[field]
    payload = values.astype(wire, copy=False).tobytes()
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
