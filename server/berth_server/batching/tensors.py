"""Tensor work of batching: a task's size, merging tasks' inputs, splitting a batch's outputs.

Pure numpy, no state; runs on the batch threads. Follows TF Serving's BatchingSession: inputs
are concatenated along the 0th dimension; padding rows (up to an allowed batch size) are copies
of the last task's first row; variable-length padding fills with the tensor's first element;
outputs are cut back into each task's rows (views, no copies) and padding rows are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from berth_server import errors

Tensors = Mapping[str, np.ndarray]


def task_size(inputs: Tensors) -> int:
    """Rows in one request: the 0th dimension every input must share."""
    size = -1
    for array in inputs.values():
        if array.ndim == 0:
            raise errors.invalid_argument(
                "Batching Run() input tensors must have at least one dimension")
        rows = array.shape[0]
        if size < 0:
            size = rows
        elif rows != size:
            raise errors.invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size")
    if size < 0:
        raise errors.invalid_argument("Batching Run() must have at least one input tensor")
    return size


def shape_key(inputs: Tensors, names: Sequence[str], *,
              pad_variable_length: bool) -> tuple[object, ...]:
    """What must agree for tasks to share a batch: non-batch dims, or just ranks when padding.

    `names` fixes the order (the sorted input aliases), so equal keys mean equal shapes per name.
    """
    if pad_variable_length:
        return tuple(inputs[name].ndim for name in names)
    return tuple(inputs[name].shape[1:] for name in names)


def merge(parts: Sequence[Tensors], padded_size: int, *,
          pad_variable_length: bool) -> dict[str, np.ndarray]:
    """Concatenate tasks' inputs, padding to common shapes and up to `padded_size` rows."""
    merged: dict[str, np.ndarray] = {}
    for key in parts[0]:
        arrays = [part[key] for part in parts]
        if pad_variable_length:
            arrays = _pad_to_common_shape(arrays)
        rows = sum(array.shape[0] for array in arrays)
        if padded_size > rows > 0:
            first_row = next(a for a in reversed(arrays) if a.shape[0])[:1]
            arrays.append(np.repeat(first_row, padded_size - rows, axis=0))
        merged[key] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return merged


def _pad_to_common_shape(arrays: list[np.ndarray]) -> list[np.ndarray]:
    target = tuple(max(dims) for dims in zip(*(a.shape[1:] for a in arrays), strict=True))
    return [a if a.shape[1:] == target else _pad(a, target) for a in arrays]


def _pad(array: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    fill = array.flat[0] if array.size else array.dtype.type()
    padded = np.full((array.shape[0], *target), fill, dtype=array.dtype)
    padded[tuple(slice(0, n) for n in array.shape)] = array
    return padded


def split(outputs: Tensors, sizes: Sequence[int], padded_size: int) -> list[Tensors]:
    """Each task's rows of every output, in task order; padding rows are dropped."""
    for value in outputs.values():
        if value.ndim == 0:
            raise errors.failed_precondition("Batched output tensor has 0 dimensions")
        if value.shape[0] != padded_size:
            raise errors.failed_precondition(
                "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                "dimension sizes of the input tensors")
    if len(sizes) == 1 and sizes[0] == padded_size:
        return [outputs]
    parts: list[Tensors] = []
    start = 0
    for size in sizes:
        stop = start + size
        parts.append({key: value[start:stop] for key, value in outputs.items()})
        start = stop
    return parts


def join(parts: Sequence[Tensors]) -> dict[str, np.ndarray]:
    """Rejoin the outputs of a task that was split across batches."""
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
