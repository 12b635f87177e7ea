"""--batching_parameters_file: TF Serving's text format, defaults and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth_server import errors
from berth_server.batching import parameters as batching_parameters


def parse(text: str) -> batching_parameters.BatchingParameters:
    return batching_parameters.parse(text, default_threads=7)


def test_unset_fields_take_tf_servings_defaults() -> None:
    params = parse("")
    assert params.max_batch_size == 1000
    assert params.batch_timeout_micros == 0
    assert params.max_enqueued_batches == 10
    assert params.num_batch_threads == 7
    assert params.thread_pool_name == "batch_threads"
    assert params.allowed_batch_sizes == ()
    assert not params.pad_variable_length_inputs
    assert not params.enable_large_batch_splitting
    assert params.max_execution_batch_size == 1000


def test_the_documented_sample_file_parses() -> None:
    params = parse("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
                   "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n")
    assert (params.max_batch_size, params.max_enqueued_batches, params.num_batch_threads) == (
        128, 1000000, 8)
    assert params.max_execution_batch_size == 128


def test_every_field_is_read() -> None:
    params = parse("""
        max_batch_size { value: 8 } batch_timeout_micros { value: 500 }
        max_enqueued_batches { value: 3 } num_batch_threads { value: 2 }
        thread_pool_name { value: "pool" } allowed_batch_sizes: 2 allowed_batch_sizes: 4
        pad_variable_length_inputs: true enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 4 }""")
    assert params == batching_parameters.BatchingParameters(
        max_batch_size=8, batch_timeout_micros=500, max_enqueued_batches=3, num_batch_threads=2,
        thread_pool_name="pool", allowed_batch_sizes=(2, 4), pad_variable_length_inputs=True,
        enable_large_batch_splitting=True, max_execution_batch_size=4)
    assert params.batch_size_limit == 4


def test_padded_size_is_the_next_allowed_size() -> None:
    params = parse("max_batch_size { value: 8 } allowed_batch_sizes: [2, 4, 8]")
    assert [params.padded_size(n) for n in (1, 2, 3, 5, 8)] == [2, 2, 4, 8, 8]
    assert parse("").padded_size(3) == 3


PARSE_ERROR = "Error parsing text-format tensorflow.serving.BatchingParameters"


@pytest.mark.parametrize(("text", "message"), [
    ("max_batch_size { value: 0 }", "max_batch_size must be positive; was 0"),
    ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
    ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative; was -1"),
    ("max_batch_size { value: 8 } allowed_batch_sizes: [4, 2, 8]",
     "allowed_batch_sizes entries must be monotonically increasing"),
    ("max_batch_size { value: 8 } allowed_batch_sizes: [2, 4]",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
     "expected 8"),
    ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
     "max_execution_batch_size { value: 16 }", "input_batch_size_limit must be greater"),
    ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
     "max_execution_batch_size { value: 4 } allowed_batch_sizes: [2]",
     "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size"),
    ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
     "allowed_batch_sizes: [16]",
     "Last entry in allowed_batch_sizes must be less than or equal to max_batch_size"),
    ("max_batch_size: 8", PARSE_ERROR),
    ("no_such_field { value: 1 }", PARSE_ERROR),
])
def test_invalid_parameters_are_rejected_with_tf_servings_text(text: str, message: str) -> None:
    with pytest.raises(errors.ServingError) as raised:
        parse(text)
    assert raised.value.code == errors.Code.INVALID_ARGUMENT
    assert message in raised.value.message


def test_zero_enqueued_batches_means_one_without_splitting_as_in_tf() -> None:
    assert parse("max_enqueued_batches { value: 0 }").max_enqueued_batches == 1


def test_max_execution_batch_size_above_max_batch_size_is_ignored_without_splitting() -> None:
    params = parse("max_batch_size { value: 8 } max_execution_batch_size { value: 16 }")
    assert params.batch_size_limit == 8


def test_the_server_without_a_file_uses_defaults_and_tf_servings_pool_name() -> None:
    params = batching_parameters.for_server("", default_threads=3)
    assert params.num_batch_threads == 3
    assert params.thread_pool_name == "model_server_batch_threads"


def test_a_file_is_read_and_a_missing_one_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 16 }")
    assert batching_parameters.for_server(str(path), default_threads=1).max_batch_size == 16
    with pytest.raises(errors.ServingError, match="missing; No such file or directory"):
        batching_parameters.read_file(tmp_path / "missing", default_threads=1)


def test_one_batch_thread_per_gpu_when_there_are_gpus() -> None:
    assert batching_parameters.default_num_batch_threads(2) == 2
    assert batching_parameters.default_num_batch_threads(0) >= 1


def test_a_version_without_its_own_file_uses_the_servers_parameters(tmp_path: Path) -> None:
    server = parse("max_batch_size { value: 16 }")
    assert batching_parameters.for_model(tmp_path, server) is server


def test_a_versions_own_file_sets_its_queues_but_not_the_shared_threads(tmp_path: Path) -> None:
    server = parse("max_batch_size { value: 16 } num_batch_threads { value: 3 } "
                   'thread_pool_name { value: "shared" }')
    (tmp_path / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 4 } batch_timeout_micros { value: 10 } "
        "num_batch_threads { value: 9 }")
    params = batching_parameters.for_model(tmp_path, server)
    assert (params.max_batch_size, params.batch_timeout_micros) == (4, 10)
    assert (params.num_batch_threads, params.thread_pool_name) == (3, "shared")


def test_an_invalid_version_file_is_invalid_argument_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "batching_params.pbtxt").write_text("max_batch_size { value: -1 }")
    with pytest.raises(errors.ServingError) as raised:
        batching_parameters.check_model_file(tmp_path)
    assert raised.value.code == errors.Code.INVALID_ARGUMENT
    assert raised.value.message == (f"{tmp_path / 'batching_params.pbtxt'}: "
                                    "max_batch_size must be positive; was -1")
