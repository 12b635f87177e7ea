"""TensorProto <-> numpy on the gRPC path: every dtype both ways, both encodings (typed *_val
fields and tensor_content), scalars, and the malformed tensors refused as INVALID_ARGUMENT."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from berth_server import errors
from berth_server.servables import tensor_protos

BFLOAT16 = np.dtype(tf.bfloat16.as_numpy_dtype)


def shape(*sizes: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in sizes])


def proto(dtype: int, sizes: tuple[int, ...], **fields: Any) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape(*sizes), **fields)


def content(array: np.ndarray) -> tensor_pb2.TensorProto:
    """The client's encoding (`tf.make_tensor_proto`'s usual one): little-endian bytes."""
    little = array.astype(array.dtype.newbyteorder("<"))
    return proto(tf.as_dtype(array.dtype).as_datatype_enum, array.shape,
                 tensor_content=little.tobytes())


def refusal(message: str) -> tuple[errors.Code, str]:
    return errors.Code.INVALID_ARGUMENT, message


# dtype, values (2x2), the typed field TF Serving's AsProtoField fills for outputs
TYPED = [
    (np.float32, [[1.5, -2.0], [0.0, 3.25]], "float_val"),
    (np.float64, [[1e300, -2.0], [0.0, 1e-300]], "double_val"),
    (np.int32, [[2**31 - 1, -(2**31)], [0, 7]], "int_val"),
    (np.int16, [[2**15 - 1, -(2**15)], [0, 7]], "int_val"),
    (np.int8, [[127, -128], [0, 7]], "int_val"),
    (np.uint8, [[255, 0], [1, 7]], "int_val"),
    (np.uint16, [[2**16 - 1, 0], [1, 7]], "int_val"),
    (np.int64, [[2**63 - 1, -(2**63)], [0, 7]], "int64_val"),
    (np.uint32, [[2**32 - 1, 0], [1, 7]], "uint32_val"),
    (np.uint64, [[2**64 - 1, 0], [1, 7]], "uint64_val"),
    (np.bool_, [[True, False], [False, True]], "bool_val"),
]

# dtypes whose typed field holds their bits as another number type (half_val, *complex_val)
BIT_TYPED = [
    (np.float16, [[1.5, -2.0], [0.0, 65504.0]]),
    (BFLOAT16, [[1.5, -2.0], [0.0, 256.0]]),
    (np.complex64, [[1 + 2j, -1j], [0, 3]]),
    (np.complex128, [[1 + 2j, -1j], [0, 3]]),
]


def assert_same(decoded: np.ndarray, expected: np.ndarray) -> None:
    assert decoded.dtype == expected.dtype
    assert decoded.shape == expected.shape
    np.testing.assert_array_equal(decoded, expected)


# -- results ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, values, field", TYPED)
def test_a_result_uses_the_typed_field_and_decodes_to_the_same_array(
        dtype: Any, values: list[list[Any]], field: str) -> None:
    array = np.array(values, dtype=dtype)
    encoded = tensor_protos.to_proto(array)
    assert [f.name for f, _ in encoded.ListFields()] == ["dtype", "tensor_shape", field]
    assert [d.size for d in encoded.tensor_shape.dim] == [2, 2]
    assert_same(tensor_protos.to_ndarray(encoded), array)
    assert_same(tf.make_ndarray(encoded), array)  # what a client decodes


@pytest.mark.parametrize("dtype, values", [(d, v) for d, v, _ in TYPED] + BIT_TYPED)
def test_a_result_as_tensor_content_decodes_to_the_same_array(dtype: Any,
                                                              values: list[list[Any]]) -> None:
    array = np.array(values, dtype=dtype)
    encoded = tensor_protos.to_proto(array, as_tensor_content=True)
    assert [f.name for f, _ in encoded.ListFields()] == ["dtype", "tensor_shape",
                                                         "tensor_content"]
    assert_same(tensor_protos.to_ndarray(encoded), array)
    assert_same(tf.make_ndarray(encoded), array)


@pytest.mark.parametrize("dtype, values", BIT_TYPED)
def test_half_and_complex_results_round_trip_through_their_bit_fields(
        dtype: Any, values: list[list[Any]]) -> None:
    array = np.array(values, dtype=dtype)
    encoded = tensor_protos.to_proto(array)
    assert not encoded.tensor_content
    assert_same(tensor_protos.to_ndarray(encoded), array)
    assert_same(tf.make_ndarray(encoded), array)


@pytest.mark.parametrize("dtype, values, field", [
    (np.float16, [1.5, -2.0], "half_val"),
    (BFLOAT16, [1.5, -2.0], "half_val"),
    (np.complex64, [1 + 2j], "scomplex_val"),
    (np.complex128, [1 + 2j], "dcomplex_val"),
])
def test_half_and_complex_results_use_their_typed_fields(dtype: Any, values: list[Any],
                                                         field: str) -> None:
    encoded = tensor_protos.to_proto(np.array(values, dtype=dtype))
    assert [f.name for f, _ in encoded.ListFields()] == ["dtype", "tensor_shape", field]


@pytest.mark.parametrize("as_tensor_content", [False, True])
def test_string_results_always_use_string_val(as_tensor_content: bool) -> None:
    array = np.array([[b"a", b""], [b"\x00\xff", "é".encode()]], dtype=object)
    encoded = tensor_protos.to_proto(array, as_tensor_content=as_tensor_content)
    assert encoded.dtype == types_pb2.DT_STRING and not encoded.tensor_content
    assert list(encoded.string_val) == [b"a", b"", b"\x00\xff", "é".encode()]
    assert_same(tensor_protos.to_ndarray(encoded), array)


@pytest.mark.parametrize("array", [
    np.array(2.5, dtype=np.float32),
    np.array(-7, dtype=np.int64),
    np.array(True),
    np.array(b"one", dtype=object),
    np.array(1.5, dtype=np.float16),
])
@pytest.mark.parametrize("as_tensor_content", [False, True])
def test_a_scalar_result_has_no_dimensions_and_decodes_to_a_scalar(
        array: np.ndarray, as_tensor_content: bool) -> None:
    encoded = tensor_protos.to_proto(array, as_tensor_content=as_tensor_content)
    assert list(encoded.tensor_shape.dim) == [] and not encoded.tensor_shape.unknown_rank
    assert_same(tensor_protos.to_ndarray(encoded), array)


@pytest.mark.parametrize("array", [
    np.zeros((0,), dtype=np.float32),
    np.zeros((3, 0, 2), dtype=np.int32),
    np.zeros((0,), dtype=object),
])
def test_an_empty_result_keeps_its_shape(array: np.ndarray) -> None:
    encoded = tensor_protos.to_proto(array)
    assert [d.size for d in encoded.tensor_shape.dim] == list(array.shape)
    assert tensor_protos.to_ndarray(encoded).shape == array.shape


def test_a_strided_result_is_encoded_in_logical_order() -> None:
    column = np.array([[1, 2], [3, 4]], dtype=np.float32)[:, 0]
    for as_tensor_content in (False, True):
        encoded = tensor_protos.to_proto(column, as_tensor_content=as_tensor_content)
        assert tensor_protos.to_ndarray(encoded).tolist() == [1.0, 3.0]


# -- requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, values", [(d, v) for d, v, _ in TYPED] + BIT_TYPED)
def test_a_request_in_tensor_content_decodes_to_its_array(dtype: Any,
                                                          values: list[list[Any]]) -> None:
    array = np.array(values, dtype=dtype)
    assert_same(tensor_protos.to_ndarray(content(array)), array)
    assert_same(tensor_protos.to_ndarray(tf.make_tensor_proto(array)), array)


def test_tensor_content_is_read_as_little_endian() -> None:
    encoded = proto(types_pb2.DT_FLOAT, (2,), tensor_content=struct.pack("<2f", 1.5, -2.0))
    assert tensor_protos.to_ndarray(encoded).tolist() == [1.5, -2.0]
    encoded = proto(types_pb2.DT_INT64, (1,), tensor_content=struct.pack("<q", -(2**40)))
    assert tensor_protos.to_ndarray(encoded).tolist() == [-(2**40)]


@pytest.mark.parametrize("encoded, expected", [
    (proto(types_pb2.DT_HALF, (2,), half_val=[0x3E00, 0xC000]),
     np.array([1.5, -2.0], dtype=np.float16)),
    (proto(types_pb2.DT_BFLOAT16, (2,), half_val=[0x3FC0, 0xC000]),
     np.array([1.5, -2.0], dtype=BFLOAT16)),
    (proto(types_pb2.DT_COMPLEX64, (1,), scomplex_val=[1.0, 2.0]),
     np.array([1 + 2j], dtype=np.complex64)),
    (proto(types_pb2.DT_INT8, (2,), int_val=[-1, 5]), np.array([-1, 5], dtype=np.int8)),
])
def test_a_request_in_its_typed_field_decodes_to_its_array(encoded: tensor_pb2.TensorProto,
                                                          expected: np.ndarray) -> None:
    assert_same(tensor_protos.to_ndarray(encoded), expected)


@pytest.mark.parametrize("encoded, expected", [
    # fewer values than the shape: TensorFlow repeats the last one ...
    (proto(types_pb2.DT_FLOAT, (3,), float_val=[1.0, 2.0]), [1.0, 2.0, 2.0]),
    (proto(types_pb2.DT_STRING, (2,), string_val=[b"x"]), [b"x", b"x"]),
    # ... or fills zeros when none are sent
    (proto(types_pb2.DT_INT32, (2, 2)), [[0, 0], [0, 0]]),
    # values in another dtype's field are not read
    (proto(types_pb2.DT_INT32, (2,), float_val=[1.0, 2.0]), [0, 0]),
    # tensor_content wins over typed values
    (proto(types_pb2.DT_FLOAT, (2,), tensor_content=struct.pack("<2f", 7.0, 8.0),
           float_val=[1.0, 2.0]), [7.0, 8.0]),
])
def test_a_request_is_decoded_as_tensorflow_decodes_it(encoded: tensor_pb2.TensorProto,
                                                       expected: list[Any]) -> None:
    assert tensor_protos.to_ndarray(encoded).tolist() == expected
    assert tf.make_ndarray(encoded).tolist() == expected


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoded, message", [
    (tensor_pb2.TensorProto(), "tensor has an invalid dtype (DT_INVALID)"),
    (proto(types_pb2.DT_INVALID, (1,), float_val=[1.0]),
     "tensor has an invalid dtype (DT_INVALID)"),
    (proto(types_pb2.DT_FLOAT, (-1,), float_val=[1.0]),
     "Unable to parse tensor proto: negative dimension -1"),
    (proto(types_pb2.DT_INT32, (2, -3)),
     "Unable to parse tensor proto: negative dimension -3"),
    (proto(types_pb2.DT_FLOAT, (2**26 + 1,), float_val=[1.0]),
     f"Unable to parse tensor proto: shape [{2**26 + 1}] needs {2**26 + 1} values but 1 were "
     f"sent; a tensor over {tensor_protos.MAX_FILLED_BYTES} bytes must carry its values"),
    (proto(types_pb2.DT_DOUBLE, (1 << 20, 1 << 20)),
     f"Unable to parse tensor proto: shape [{1 << 20}, {1 << 20}] needs {1 << 40} values but 0 "
     f"were sent; a tensor over {tensor_protos.MAX_FILLED_BYTES} bytes must carry its values"),
    (proto(types_pb2.DT_STRING, (2**25 + 1,), string_val=[b"x"]),
     f"Unable to parse tensor proto: shape [{2**25 + 1}] needs {2**25 + 1} values but 1 were "
     f"sent; a tensor over {tensor_protos.MAX_FILLED_BYTES} bytes must carry its values"),
])
def test_a_malformed_request_tensor_is_refused_with_its_reason(encoded: tensor_pb2.TensorProto,
                                                               message: str) -> None:
    with pytest.raises(errors.ServingError) as raised:
        tensor_protos.to_ndarray(encoded)
    assert (raised.value.code, raised.value.message) == refusal(message)


@pytest.mark.parametrize("encoded", [
    proto(types_pb2.DT_FLOAT, (2,), tensor_content=b"\x00" * 4),  # one value for two
    proto(types_pb2.DT_FLOAT, (1,), tensor_content=b"\x00" * 6),  # not whole values
    proto(types_pb2.DT_INT64, (1 << 20, 1 << 20), tensor_content=b"\x00" * 8),
    proto(types_pb2.DT_HALF, (4,), tensor_content=b"\x00" * 2),
    proto(types_pb2.DT_STRING, (2,), tensor_content=b"ab"),
    proto(types_pb2.DT_FLOAT, (1,), float_val=[1.0, 2.0, 3.0]),  # more values than the shape
    proto(types_pb2.DT_RESOURCE, ()),
    proto(999, (1,)),  # no such dtype
    tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                           tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True),
                           float_val=[1.0, 2.0]),
])
def test_a_tensor_tensorflow_cannot_decode_is_refused_not_raised(
        encoded: tensor_pb2.TensorProto) -> None:
    with pytest.raises(errors.ServingError) as raised:
        tensor_protos.to_ndarray(encoded)
    assert raised.value.code == errors.Code.INVALID_ARGUMENT
    assert raised.value.message.startswith("Unable to parse tensor proto: ")


def test_a_tensor_of_unknown_rank_is_refused() -> None:
    encoded = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True),
        float_val=[1.0])
    with pytest.raises(errors.ServingError) as raised:
        tensor_protos.to_ndarray(encoded)
    assert raised.value.code == errors.Code.INVALID_ARGUMENT


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128, np.bool_])
def test_a_large_result_is_the_same_message_as_one_built_value_by_value(dtype: Any) -> None:
    """Large float, complex and bool results are written as packed bytes straight from numpy."""
    values = np.random.default_rng(7).standard_normal((64, 50)) * 1e6
    array = (values + 1j * values[::-1] if np.dtype(dtype).kind == "c" else values).astype(dtype)
    for result in (array, array[:, ::3], np.asfortranarray(array)):
        flat = np.ascontiguousarray(result).ravel()
        field = tensor_protos.to_proto(flat[:1]).ListFields()[-1][0].name  # one value: a list
        expected = tensor_pb2.TensorProto(dtype=tf.as_dtype(dtype).as_datatype_enum)
        expected.tensor_shape.CopyFrom(tf.TensorShape(result.shape).as_proto())
        getattr(expected, field).extend(
            flat.view(flat.real.dtype).tolist() if flat.dtype.kind == "c" else flat.tolist())
        encoded = tensor_protos.to_proto(result)
        assert encoded.SerializeToString() == expected.SerializeToString()
        assert_same(tf.make_ndarray(encoded), result)
