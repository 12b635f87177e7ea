"""`berth-server`'s command line: TensorFlow's flag syntaxes, the Docker image's environment
variables, and the startup checks with TF Serving's wording."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from berth_server import cli
from berth_server.options import ServerOptions


def parse(*argv: str, **environ: str) -> ServerOptions:
    return cli.parse_flags(list(argv), environ=dict(environ))


def refused(*argv: str) -> str:
    with pytest.raises(cli.UsageError) as raised:
        parse(*argv)
    return str(raised.value)


# -- flag syntaxes ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["--port=9000"],
    ["-port=9000"],
    ["--port", "9000"],
    ["-port", "9000"],
    ["--port=1", "--port=9000"],  # the last one wins
])
def test_every_flag_syntax_sets_the_flag(argv: list[str]) -> None:
    assert parse(*argv).port == 9000


@pytest.mark.parametrize("argv, value", [
    ([], False),
    (["--enable_batching"], True),
    (["-enable_batching"], True),
    (["--enable_batching=true"], True),
    (["--enable_batching=TRUE"], True),
    (["--enable_batching=1"], True),
    (["--enable_batching=false"], False),
    (["--enable_batching=False"], False),
    (["--enable_batching=0"], False),
    (["--enable_batching", "false"], False),  # a bool's value may follow as the next argument
    (["--enable_batching", "true"], True),
    (["--enable_batching", "--port=1"], True),  # ... but a flag after it is a flag
])
def test_a_boolean_flag_is_true_bare_or_takes_its_value(argv: list[str], value: bool) -> None:
    assert parse(*argv).enable_batching is value


def test_a_bare_boolean_does_not_take_the_next_flag_as_its_value() -> None:
    options = parse("--enable_batching", "--port", "1")
    assert (options.enable_batching, options.port) == (True, 1)


@pytest.mark.parametrize("argv, field, value", [
    (["--model_name=resnet"], "model_name", "resnet"),
    (["--model_name="], "model_name", ""),
    (["--model_base_path", "/models/a=b"], "model_base_path", "/models/a=b"),
    (["--model_base_path=/models/a=b"], "model_base_path", "/models/a=b"),
    (["--rest_api_port=8501"], "rest_api_port", 8501),
    (["--per_process_gpu_memory_fraction=0.25"], "per_process_gpu_memory_fraction", 0.25),
    (["--shutdown_grace_period_seconds", "2.5"], "shutdown_grace_period_seconds", 2.5),
    (["--saved_model_tags=serve,gpu"], "saved_model_tags", "serve,gpu"),
])
def test_each_flag_takes_a_value_of_its_type(argv: list[str], field: str, value: Any) -> None:
    options = parse(*argv)
    assert getattr(options, field) == value
    assert type(getattr(options, field)) is type(value)


def test_without_flags_every_option_has_tensorflow_model_servers_default() -> None:
    assert parse() == ServerOptions()


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--no_such_flag=1"], "unknown argument: --no_such_flag=1"),
    (["--no_such_flag"], "unknown argument: --no_such_flag"),
    (["port=8500"], "unknown argument: port=8500"),
    (["models"], "unknown argument: models"),
    (["--"], "unknown argument: --"),
    (["-"], "unknown argument: -"),
    (["--enable_batching", "maybe"], "unknown argument: maybe"),
    (["--tags"], "unknown argument: --tags"),  # a property, not a flag
    (["--port"], "flag 'port' needs a value"),
    (["--model_name"], "flag 'model_name' needs a value"),
    (["--port=eighty"], "Illegal value 'eighty' specified for int flag 'port'"),
    (["--port="], "Illegal value '' specified for int flag 'port'"),
    (["--port=8500.0"], "Illegal value '8500.0' specified for int flag 'port'"),
    (["--port=8_500"], "Illegal value '8_500' specified for int flag 'port'"),
    (["--num_workers=two"], "Illegal value 'two' specified for int flag 'num_workers'"),
    (["--num_workers=1.5"], "Illegal value '1.5' specified for int flag 'num_workers'"),
    (["--num_workers=auto"], "Illegal value 'auto' specified for int flag 'num_workers'"),
    (["--per_process_gpu_memory_fraction=half"],
     "Illegal value 'half' specified for float flag 'per_process_gpu_memory_fraction'"),
    (["--enable_batching=maybe"],
     "Illegal value 'maybe' specified for bool flag 'enable_batching'"),
    (["--enable_batching="], "Illegal value '' specified for bool flag 'enable_batching'"),
])
def test_a_bad_command_line_is_refused_naming_the_argument(argv: list[str], message: str) -> None:
    assert refused(*argv) == message


@pytest.mark.parametrize("flag", ["--help", "-help", "--helpfull", "-h"])
def test_help_is_refused_with_the_usage_listing_every_flag_and_its_default(flag: str) -> None:
    text = refused(flag)
    assert text.startswith("usage: berth-server [flags]\n")
    assert "\t--port=8500\n" in text
    assert "\t--enable_model_warmup=true\n" in text
    assert text.count("\t--") == len(dataclasses.fields(ServerOptions))


# -- the environment ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv, environ, name, base_path", [
    ([], {}, "default", ""),
    ([], {"MODEL_NAME": "resnet"}, "resnet", ""),
    ([], {"MODEL_NAME": ""}, "default", ""),
    ([], {"MODEL_BASE_PATH": "/models"}, "default", "/models/default"),
    ([], {"MODEL_NAME": "resnet", "MODEL_BASE_PATH": "/models"}, "resnet", "/models/resnet"),
    (["--model_name=bert"], {"MODEL_NAME": "resnet", "MODEL_BASE_PATH": "/models"},
     "bert", "/models/bert"),
    (["--model_base_path=/data/x"], {"MODEL_NAME": "resnet", "MODEL_BASE_PATH": "/models"},
     "resnet", "/data/x"),
    (["--model_config_file=/config/models.config"], {"MODEL_BASE_PATH": "/models"},
     "default", ""),  # a config file names its own paths
])
def test_model_name_and_base_path_come_from_the_environment_unless_given_as_flags(
        argv: list[str], environ: dict[str, str], name: str, base_path: str) -> None:
    options = parse(*argv, **environ)
    assert (options.model_name, options.model_base_path) == (name, base_path)


def test_the_process_environment_is_read_when_none_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "from-env")
    monkeypatch.delenv("MODEL_BASE_PATH", raising=False)
    assert cli.parse_flags([]).model_name == "from-env"
    assert cli.parse_flags([], environ={}).model_name == "default"


# -- startup checks -----------------------------------------------------------------------------

VALID = ServerOptions(model_base_path="/models/m")


@pytest.mark.parametrize("changes", [
    {},
    {"model_base_path": "", "model_config_file": "/config/models.config"},
    {"port": 0, "grpc_socket_path": "/tmp/berth.sock"},
    {"tensorflow_intra_op_parallelism": 2, "tensorflow_inter_op_parallelism": 2},
    {"tensorflow_session_parallelism": 4},
    {"per_process_gpu_memory_fraction": 1.0},
    {"access_log_sampling_rate": 0.0},
    {"log_format": "json"},
    {"max_request_size_bytes": 0, "max_inflight_requests": 0},
    {"enable_batching": True, "batching_parameters_file": "/config/batching.config"},
    {"rest_api_enable_ssl": True, "ssl_config_file": "/config/ssl.config"},
    {"num_workers": 0},
    {"num_workers": 4},
])
def test_a_sound_configuration_passes_the_startup_checks(changes: dict[str, Any]) -> None:
    cli.validate(dataclasses.replace(VALID, **changes))


@pytest.mark.parametrize("changes, message", [
    ({"model_base_path": ""},
     "Both server_options.model_base_path and server_options.model_config_file are empty!"),
    ({"port": 0},
     "server_options.grpc_socket_path is empty while port is 0; the server would not listen "
     "anywhere"),
    ({"batching_parameters_file": "/config/batching.config"},
     "--batching_parameters_file is set but --enable_batching is false"),
    ({"use_alts_credentials": True, "ssl_config_file": "/config/ssl.config"},
     "ssl_config_file and use_alts_credentials cannot both be set"),
    ({"tensorflow_session_parallelism": 1, "tensorflow_intra_op_parallelism": 1,
      "tensorflow_inter_op_parallelism": 1},
     "Either configure server_options.tensorflow_session_parallelism or "
     "(server_options.tensorflow_intra_op_parallelism, "
     "server_options.tensorflow_inter_op_parallelism). Cannot configure all."),
    ({"per_process_gpu_memory_fraction": 1.5}, "per_process_gpu_memory_fraction must be in [0, 1]"),
    ({"per_process_gpu_memory_fraction": -0.1},
     "per_process_gpu_memory_fraction must be in [0, 1]"),
    ({"log_format": "xml"}, "--log_format must be text or json, not 'xml'"),
    ({"access_log_sampling_rate": 1.01}, "--access_log_sampling_rate must be in [0, 1]"),
    ({"access_log_sampling_rate": -1.0}, "--access_log_sampling_rate must be in [0, 1]"),
    ({"max_request_size_bytes": -1},
     "--max_request_size_bytes and --max_inflight_requests must be >= 0"),
    ({"max_inflight_requests": -1},
     "--max_request_size_bytes and --max_inflight_requests must be >= 0"),
    ({"rest_api_enable_ssl": True}, "--rest_api_enable_ssl needs --ssl_config_file"),
    ({"num_workers": -1}, "--num_workers must be >= 0 (0: one worker per usable CPU)"),
    ({"rest_api_max_connections": 0}, "--rest_api_max_connections must be > 0"),
    ({"rest_api_header_timeout_seconds": 0.0}, "--rest_api_header_timeout_seconds must be > 0"),
    ({"rest_api_max_body_bytes_in_flight": -1},
     "--rest_api_max_body_bytes_in_flight must be > 0"),
])
def test_each_unsound_configuration_is_refused_at_startup(changes: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(cli.UsageError) as raised:
        cli.validate(dataclasses.replace(VALID, **changes))
    assert str(raised.value) == message


@pytest.mark.parametrize("argv, status, stderr", [
    (["--bogus"], 1, "unknown argument: --bogus\n"),
    (["--port=0"], 1, "Failed to start server. Error: INVALID_ARGUMENT: Both "
                      "server_options.model_base_path and server_options.model_config_file "
                      "are empty!\n"),
])
def test_main_reports_a_refusal_on_stderr_and_exits_1(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
        status: int, stderr: str) -> None:
    monkeypatch.delenv("MODEL_BASE_PATH", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # main sets it if unset; keep it scoped
    assert cli.main(argv) == status
    assert capsys.readouterr().err == stderr
