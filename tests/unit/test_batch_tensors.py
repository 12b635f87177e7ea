"""Merging tasks' inputs and splitting a batch's outputs, as TF Serving's BatchingSession does."""

from __future__ import annotations

import numpy as np
import pytest

from berth_server import errors
from berth_server.batching import tensors as batching_tensors


def test_a_task_size_is_the_shared_0th_dimension() -> None:
    assert batching_tensors.task_size({"a": np.zeros((3, 2)), "b": np.zeros(3)}) == 3


@pytest.mark.parametrize(("inputs", "message"), [
    ({"a": np.zeros((3, 2)), "b": np.zeros(2)},
     "Batching Run() input tensors must have equal 0th-dimension size"),
    ({"a": np.float32(1.0) * np.ones(())},
     "Batching Run() input tensors must have at least one dimension"),
    ({}, "Batching Run() must have at least one input tensor"),
])
def test_unbatchable_inputs_are_invalid(inputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(errors.ServingError) as raised:
        batching_tensors.task_size(inputs)
    assert raised.value.code == errors.Code.INVALID_ARGUMENT
    assert raised.value.message == message


def test_merge_concatenates_in_task_order_and_pads_with_a_real_row() -> None:
    parts = [{"x": np.array([[1, 1]])}, {"x": np.array([[2, 2], [3, 3]])}]
    merged = batching_tensors.merge(parts, 5, pad_variable_length=False)
    np.testing.assert_array_equal(merged["x"], [[1, 1], [2, 2], [3, 3], [2, 2], [2, 2]])


def test_variable_length_inputs_are_padded_with_the_first_element() -> None:
    parts = [{"x": np.array([[7]])}, {"x": np.array([[1, 2, 3]])}]
    merged = batching_tensors.merge(parts, 2, pad_variable_length=True)
    np.testing.assert_array_equal(merged["x"], [[7, 7, 7], [1, 2, 3]])


def test_string_inputs_pad_and_merge() -> None:
    parts = [{"s": np.array([[b"a"]], dtype=object)}, {"s": np.array([[b"b", b"c"]], dtype=object)}]
    merged = batching_tensors.merge(parts, 2, pad_variable_length=True)
    assert merged["s"].tolist() == [[b"a", b"a"], [b"b", b"c"]]


def test_shape_keys_separate_different_non_batch_dims_unless_padding() -> None:
    small, large = {"x": np.zeros((1, 2))}, {"x": np.zeros((4, 3))}
    key = batching_tensors.shape_key
    assert key(small, ["x"], pad_variable_length=False) != key(large, ["x"],
                                                                pad_variable_length=False)
    assert key(small, ["x"], pad_variable_length=True) == key(large, ["x"],
                                                               pad_variable_length=True)


def test_split_routes_rows_back_and_drops_padding() -> None:
    outputs = {"y": np.arange(6), "z": np.arange(6) * 10}
    parts = batching_tensors.split(outputs, [1, 2, 0], 6)
    assert [p["y"].tolist() for p in parts] == [[0], [1, 2], []]
    assert parts[1]["z"].tolist() == [10, 20]


@pytest.mark.parametrize("value", [np.float32(1.0) * np.ones(()), np.arange(4)])
def test_outputs_without_the_batch_dimension_fail_the_batch(value: np.ndarray) -> None:
    with pytest.raises(errors.ServingError) as raised:
        batching_tensors.split({"y": value}, [1, 2], 3)
    assert raised.value.code == errors.Code.FAILED_PRECONDITION


def test_join_rejoins_pieces() -> None:
    joined = batching_tensors.join([{"y": np.arange(2)}, {"y": np.arange(2, 5)}])
    assert joined["y"].tolist() == [0, 1, 2, 3, 4]
