"""`--batching_parameters_file`: TF Serving's BatchingParameters text proto, defaulted and checked.

The file is parsed with protobuf text_format against `berth.serving.BatchingParameters`, which
has TF Serving's field names, so users' files load unchanged. Unset fields take TF Serving's
defaults; invalid combinations are INVALID_ARGUMENT with the wording of TF Serving's
`bundle_factory_util` / `SharedBatchScheduler` checks, reported at startup.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from berth_server import errors
from berth_server.config import text_protos
from berth_server.protos import batching_pb2

DEFAULT_THREAD_POOL_NAME = "batch_threads"
# A version's own parameters under --enable_per_model_batching_parameters, as in TF Serving.
MODEL_FILE_NAME = "batching_params.pbtxt"
# What TF Serving names the pool when --enable_batching comes without a parameters file.
MODEL_SERVER_THREAD_POOL_NAME = "model_server_batch_threads"
_TYPE_NAME = "tensorflow.serving.BatchingParameters"  # the proto users write the file for


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """The scheduler's settings, each already defaulted as TF Serving defaults it."""

    max_batch_size: int = 1000
    """Largest batch in 0th-dimension rows; a bigger request is rejected unless splitting."""
    batch_timeout_micros: int = 0
    """How long the oldest task of an open batch may wait for company before the batch closes."""
    max_enqueued_batches: int = 10
    """Batches a queue may hold (the open one included); beyond that: UNAVAILABLE at once."""
    num_batch_threads: int = 1
    """Batches executed concurrently, shared by every queue."""
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME
    """Prefix of the batch threads' names."""
    allowed_batch_sizes: tuple[int, ...] = ()
    """Batch sizes to pad up to (with copies of a real row); empty means any size runs."""
    pad_variable_length_inputs: bool = False
    """Pad non-batch dimensions to the batch's largest; off: such tasks are batched apart."""
    enable_large_batch_splitting: bool = False
    """Split a task across batches instead of rejecting one bigger than max_batch_size."""
    max_execution_batch_size: int = 0
    """Rows a batch runs with when splitting is on (the split size); 0: max_batch_size."""

    def __post_init__(self) -> None:
        if self.max_execution_batch_size == 0:
            object.__setattr__(self, "max_execution_batch_size", self.max_batch_size)

    @property
    def batch_size_limit(self) -> int:
        """The most rows one executed batch holds."""
        if self.enable_large_batch_splitting:
            return self.max_execution_batch_size
        return self.max_batch_size

    def padded_size(self, size: int) -> int:
        """The smallest allowed batch size >= size (size itself when none is configured)."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size


def default_num_batch_threads(gpu_count: int) -> int:
    """One batch in flight per GPU when there are GPUs, else as many as CPUs (TF's default)."""
    return gpu_count if gpu_count > 0 else (os.cpu_count() or 1)


def from_proto(proto: batching_pb2.BatchingParameters, *,
               default_threads: int) -> BatchingParameters:
    """Apply TF Serving's defaults to a parsed message, then validate it."""
    max_batch_size = _int(proto, "max_batch_size", 1000)
    params = BatchingParameters(
        max_batch_size=max_batch_size,
        batch_timeout_micros=_int(proto, "batch_timeout_micros", 0),
        max_enqueued_batches=_int(proto, "max_enqueued_batches", 10),
        num_batch_threads=_int(proto, "num_batch_threads", default_threads),
        thread_pool_name=(proto.thread_pool_name.value if proto.HasField("thread_pool_name")
                          else DEFAULT_THREAD_POOL_NAME),
        allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
        pad_variable_length_inputs=proto.pad_variable_length_inputs,
        enable_large_batch_splitting=proto.enable_large_batch_splitting.value,
        max_execution_batch_size=_int(proto, "max_execution_batch_size", max_batch_size))
    if params.max_enqueued_batches == 0 and not params.enable_large_batch_splitting:
        # TF's SharedBatchScheduler rewrites 0 to 1 here: low-QPS models rely on it.
        params = dataclasses.replace(params, max_enqueued_batches=1)
    validate(params)
    return params


def _int(proto: batching_pb2.BatchingParameters, field: str, default: int) -> int:
    return int(getattr(proto, field).value) if proto.HasField(field) else default


def parse(text: str, *, default_threads: int) -> BatchingParameters:
    """Parse BatchingParameters text format; a syntax error is INVALID_ARGUMENT."""
    proto = text_protos.parse(text, batching_pb2.BatchingParameters(), type_name=_TYPE_NAME)
    return from_proto(proto, default_threads=default_threads)


def read_file(path: str | Path, *, default_threads: int) -> BatchingParameters:
    proto = text_protos.read_file(path, batching_pb2.BatchingParameters(), type_name=_TYPE_NAME)
    return from_proto(proto, default_threads=default_threads)


def for_server(path: str, *, default_threads: int) -> BatchingParameters:
    """The model server's parameters: the file when given, else defaults with TFS's pool name."""
    if path:
        return read_file(path, default_threads=default_threads)
    return BatchingParameters(num_batch_threads=default_threads,
                              thread_pool_name=MODEL_SERVER_THREAD_POOL_NAME)


def for_model(version_path: str | Path, server_params: BatchingParameters) -> BatchingParameters:
    """A version's parameters (--enable_per_model_batching_parameters): its
    `batching_params.pbtxt` when it has one, else the server's. Only the thread pool settings
    always come from the server's: the batch threads are shared by every model."""
    path = Path(version_path) / MODEL_FILE_NAME
    if not path.is_file():
        return server_params
    try:
        params = read_file(path, default_threads=server_params.num_batch_threads)
    except errors.ServingError as error:
        raise errors.invalid_argument(f"{path}: {error.message}") from None
    return dataclasses.replace(params, num_batch_threads=server_params.num_batch_threads,
                               thread_pool_name=server_params.thread_pool_name)


def check_model_file(version_path: str | Path) -> None:
    """Raise INVALID_ARGUMENT if the version has an invalid `batching_params.pbtxt`."""
    for_model(version_path, BatchingParameters())


def validate(params: BatchingParameters) -> None:
    """Raise INVALID_ARGUMENT with TF Serving's text for the first violated constraint."""
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads",
                 "max_execution_batch_size"):
        value = getattr(params, name)
        if value <= 0:
            raise errors.invalid_argument(f"{name} must be positive; was {value}")
    if params.batch_timeout_micros < 0:
        raise errors.invalid_argument(
            f"batch_timeout_micros must be non-negative; was {params.batch_timeout_micros}")
    if params.enable_large_batch_splitting and (
            params.max_batch_size < params.max_execution_batch_size):
        raise errors.invalid_argument(
            "When enable_large_batch_splitting is true, input_batch_size_limit must be greater "
            "than or equal to max_execution_batch_size. max_batch_size="
            f"{params.max_batch_size}, max_execution_batch_size={params.max_execution_batch_size}")
    _validate_allowed_batch_sizes(params)


def _validate_allowed_batch_sizes(params: BatchingParameters) -> None:
    sizes = params.allowed_batch_sizes
    if not sizes:
        return
    if sizes[0] <= 0 or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise errors.invalid_argument(
            "allowed_batch_sizes entries must be monotonically increasing")
    last = sizes[-1]
    if not params.enable_large_batch_splitting:
        if last != params.max_batch_size:
            raise errors.invalid_argument(
                "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                f"{last}; expected {params.max_batch_size}")
        return
    if last > params.max_batch_size:
        raise errors.invalid_argument(
            "Last entry in allowed_batch_sizes must be less than or equal to max_batch_size; "
            f"last entry was {last}; expected {params.max_batch_size}")
    if last != params.max_execution_batch_size:
        raise errors.invalid_argument(
            "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last "
            f"entry was {last}; expected {params.max_execution_batch_size}")
