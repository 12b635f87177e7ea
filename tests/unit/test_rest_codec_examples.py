"""Classify/regress request decoding: JSON features → serialized tf.train.Example protos."""

from __future__ import annotations

import math
from typing import Any

import pytest

from berth_server import errors
from berth_server.rest.examples_request import ExamplesInput, decode_examples_request
from berth_server.rest.json_body import parse_body


def decode(body: bytes) -> ExamplesInput:
    return decode_examples_request(parse_body(body))


def features(serialized: bytes) -> dict[str, tuple[str | None, list[Any]]]:
    """Parse with TensorFlow's own Example message: {name: (kind, values)}."""
    from tensorflow.core.example import example_pb2
    example = example_pb2.Example.FromString(serialized)
    result: dict[str, tuple[str | None, list[Any]]] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        result[name] = (kind, list(getattr(feature, kind).value) if kind else [])
    return result


def test_tf_serving_request_without_context() -> None:
    decoded = decode(b'{"examples": [{"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20},'
                     b' {"names": ["baz"], "ratings": 6.0}]}')
    assert decoded.context is None and decoded.signature_name == ""
    assert [features(example) for example in decoded.examples] == [
        {"names": ("bytes_list", [b"foo", b"bar"]), "ratings": ("float_list", [8.0, 9.0]),
         "age": ("int64_list", [20])},
        {"names": ("bytes_list", [b"baz"]), "ratings": ("float_list", [6.0])}]
    assert decoded.serialized_examples() == decoded.examples


def test_context_is_merged_into_each_example_with_the_example_winning() -> None:
    decoded = decode(b'{"signature_name": "s", "context": {"lang": "en", "w": 1},'
                     b' "examples": [{"x": 1.5, "w": 2}, {"x": 2.5}]}')
    assert decoded.signature_name == "s"
    assert decoded.context is not None
    assert features(decoded.context) == {"lang": ("bytes_list", [b"en"]),
                                         "w": ("int64_list", [1])}
    assert [features(example) for example in decoded.serialized_examples()] == [
        {"lang": ("bytes_list", [b"en"]), "w": ("int64_list", [2]), "x": ("float_list", [1.5])},
        {"lang": ("bytes_list", [b"en"]), "w": ("int64_list", [1]), "x": ("float_list", [2.5])}]


@pytest.mark.parametrize(("json_value", "expected"), [
    (b"2.0", ("float_list", [2.0])),
    (b"1e3", ("float_list", [1000.0])),
    (b"[0.1, 2.5]", ("float_list", [pytest.approx(0.1), 2.5])),
    (b"3", ("int64_list", [3])),
    (b"[-5, 9223372036854775807]", ("int64_list", [-5, 2**63 - 1])),
    (b"[-9223372036854775808]", ("int64_list", [-(2**63)])),
    (b"[true, false]", ("int64_list", [1, 0])),
    (b"[1, true]", ("int64_list", [1, 1])),
    (b'"text"', ("bytes_list", [b"text"])),
    (b'["a", {"b64": "aGVsbG8="}]', ("bytes_list", [b"a", b"hello"])),
    (b'""', ("bytes_list", [b""])),
    (b"[]", (None, [])),
    (b"[1e39, -1e39, 3.4028235e38]", ("float_list", [math.inf, -math.inf, 3.4028234663852886e38])),
])
def test_feature_values_map_to_feature_kinds(json_value: bytes,
                                             expected: tuple[str | None, list[Any]]) -> None:
    decoded = decode(b'{"examples": [{"f": ' + json_value + b"}]}")
    assert features(decoded.examples[0]) == {"f": expected}


def test_non_finite_floats_are_kept() -> None:
    decoded = decode(b'{"examples": [{"f": [NaN, Infinity]}]}')
    kind, values = features(decoded.examples[0])["f"]
    assert kind == "float_list" and math.isnan(values[0]) and values[1] == math.inf


def test_empty_example_object() -> None:
    assert features(decode(b'{"examples": [{}]}').examples[0]) == {}


@pytest.mark.parametrize(("body", "message"), [
    (b'{"instances": [1]}',
     'JSON Value: {\n    "instances": [\n        1\n    ]\n} When method is classify, key '
     "'examples' is expected and was not found"),
    (b'{"examples": {}}',
     'JSON Value: {\n    "examples": {}\n} Expecting \'examples\' value to be an list/array'),
    (b'{"examples": []}', 'JSON Value: {\n    "examples": []\n} \'examples\' value is an empty '
                          "array"),
    (b'{"examples": [[1]]}', "Example must be JSON object but got JSON Array"),
    (b'{"examples": [{}], "context": 1}', "Example must be JSON object but got JSON Number"),
    (b'{"signature_name": 1, "examples": [{}]}',
     'JSON Value: {\n    "signature_name": 1,\n    "examples": [\n        {}\n    ]\n} not '
     "formatted correctly. 'signature_name' key must be a string value."),
    (b'{"examples": [{"f": null}]}', "Feature: f has element with unexpected JSON type: Null"),
    (b'{"examples": [{"f": [[1]]}]}', "Feature: f has element with unexpected JSON type: Array"),
    (b'{"examples": [{"f": {"a": 1}}]}',
     "Feature: f has element with unexpected JSON type: Object"),
    (b'{"examples": [{"f": [1, 2.0]}]}', "Unexpected element type in feature: f expecting type: "
                                         "int64"),
    (b'{"examples": [{"f": [2.0, "a"]}]}', "Unexpected element type in feature: f expecting "
                                           "type: float"),
    (b'{"examples": [{"f": ["a", true]}]}', "Unexpected element type in feature: f expecting "
                                            "type: bytes"),
    (b'{"examples": [{"f": 18446744073709551615}]}',
     "Feature: f has uint64_t element. Only int64_t is supported."),
    (b'{"examples": [{"f": {"b64": "$"}}]}', "Unable to base64 decode"),
])
def test_errors_use_tf_serving_texts(body: bytes, message: str) -> None:
    with pytest.raises(errors.ServingError) as caught:
        decode(body)
    assert caught.value.code == errors.Code.INVALID_ARGUMENT
    assert caught.value.message == message
