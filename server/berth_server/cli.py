"""Command line of `berth-server`: `tensorflow_model_server`'s flags and startup errors.

Accepts the flag syntaxes of TensorFlow's flag parser (`--port=8500`, `-port=8500`,
`--port 8500`, bare booleans, `--flag=true|false`), plus MODEL_NAME / MODEL_BASE_PATH from the
environment as the official Docker image passes them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Sequence

from berth_server import cpu_quota, options, worker_link
from berth_server.observability import log_format

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


_INTEGER = re.compile(r"[+-]?[0-9]+")
_POSITIVE = ("rest_api_max_connections", "rest_api_max_header_bytes", "rest_api_max_header_count",
             "rest_api_header_timeout_seconds", "rest_api_body_timeout_seconds",
             "rest_api_max_body_bytes_in_flight")


class UsageError(Exception):
    """A command line that cannot be parsed; the message names the flag."""


def _field_types() -> dict[str, type]:
    defaults = options.ServerOptions()
    return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(defaults)}


def _convert(name: str, kind: type, text: str) -> object:
    if kind is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UsageError(f"Illegal value '{text}' specified for bool flag '{name}'")
    if kind is int and not _INTEGER.fullmatch(text.strip()):  # int() also takes "1_000"
        raise UsageError(f"Illegal value '{text}' specified for int flag '{name}'")
    try:
        return kind(text)
    except ValueError:
        raise UsageError(
            f"Illegal value '{text}' specified for {kind.__name__} flag '{name}'"
        ) from None


def parse_flags(argv: Sequence[str],
                environ: dict[str, str] | None = None) -> options.ServerOptions:
    """Parse `argv` (without the program name) into ServerOptions."""
    kinds = _field_types()
    values: dict[str, object] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unknown argument: {arg}")
        name, has_value, text = arg.lstrip("-").partition("=")
        if name in ("help", "helpfull", "h"):
            raise UsageError(usage())
        kind = kinds.get(name)
        if kind is None:
            raise UsageError(f"unknown argument: {arg}")
        if not has_value:
            if kind is bool and not (args and args[0].lower() in _TRUE | _FALSE):
                values[name] = True
                continue
            if not args:
                raise UsageError(f"flag '{name}' needs a value")
            text = args.pop(0)
        values[name] = _convert(name, kind, text)
    opts = options.ServerOptions(**values)  # type: ignore[arg-type]
    env = os.environ if environ is None else environ
    if "model_name" not in values and env.get("MODEL_NAME"):
        opts.model_name = env["MODEL_NAME"]
    base_from_env = env.get("MODEL_BASE_PATH")
    if "model_base_path" not in values and base_from_env and not opts.model_config_file:
        # The official image runs --model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME}.
        opts.model_base_path = os.path.join(base_from_env, opts.model_name)
    return opts


def validate(opts: options.ServerOptions) -> None:
    """Startup checks that TF Serving makes before serving; raises UsageError."""
    if not opts.model_base_path and not opts.model_config_file:
        raise UsageError("Both server_options.model_base_path and server_options.model_config_file "
                         "are empty!")
    if opts.port == 0 and not opts.grpc_socket_path:
        raise UsageError("server_options.grpc_socket_path is empty while port is 0; "
                         "the server would not listen anywhere")
    if opts.batching_parameters_file and not opts.enable_batching:
        raise UsageError("--batching_parameters_file is set but --enable_batching is false")
    if opts.use_alts_credentials and opts.ssl_config_file:
        raise UsageError("ssl_config_file and use_alts_credentials cannot both be set")
    parallelism = (opts.tensorflow_session_parallelism, opts.tensorflow_intra_op_parallelism,
                   opts.tensorflow_inter_op_parallelism)
    if all(p > 0 for p in parallelism):
        raise UsageError("Either configure server_options.tensorflow_session_parallelism or "
                         "(server_options.tensorflow_intra_op_parallelism, "
                         "server_options.tensorflow_inter_op_parallelism). Cannot configure all.")
    if not 0.0 <= opts.per_process_gpu_memory_fraction <= 1.0:
        raise UsageError("per_process_gpu_memory_fraction must be in [0, 1]")
    if opts.log_format not in log_format.FORMATS:
        raise UsageError(f"--log_format must be {' or '.join(log_format.FORMATS)}, "
                         f"not {opts.log_format!r}")
    if not 0.0 <= opts.access_log_sampling_rate <= 1.0:
        raise UsageError("--access_log_sampling_rate must be in [0, 1]")
    if opts.max_request_size_bytes < 0 or opts.max_inflight_requests < 0:
        raise UsageError("--max_request_size_bytes and --max_inflight_requests must be >= 0")
    if opts.num_workers < 0:
        raise UsageError("--num_workers must be >= 0 (0: one worker per usable CPU)")
    if opts.rest_api_enable_ssl and not opts.ssl_config_file:
        raise UsageError("--rest_api_enable_ssl needs --ssl_config_file")
    for name in _POSITIVE:
        if getattr(opts, name) <= 0:
            raise UsageError(f"--{name} must be > 0")
    _validate_device_placement(opts)


def _validate_device_placement(opts: options.ServerOptions) -> None:
    """The flag's syntax, and that it names only models of the startup config (a misspelt name
    would leave its model on the default device with nothing said)."""
    try:
        placements = opts.device_placements
    except ValueError as error:
        raise UsageError(f"--model_device_placement: {error}") from None
    if not placements:
        return
    from berth_server import errors
    from berth_server.config import model_config

    try:
        config = model_config.from_options(opts)
    except errors.ServingError:  # an unreadable config file fails startup in its own words
        return
    names = {model.name for model in config.model_config_list.config}
    unknown = sorted(placements.keys() - names)
    if unknown:
        raise UsageError(f"--model_device_placement names model(s) that are not in the model "
                         f"config: {', '.join(unknown)} (configured: {', '.join(sorted(names))})")


def usage() -> str:
    lines = ["usage: berth-server [flags]", "Flags (as tensorflow_model_server):"]
    defaults = options.ServerOptions()
    for field in dataclasses.fields(defaults):
        default = getattr(defaults, field.name)
        shown = str(default).lower() if isinstance(default, bool) else default
        lines.append(f"\t--{field.name}={shown}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ INFO lines (oneDNN, CPU features) drown the server's own log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        opts = parse_flags(args)
        if opts.version:
            from berth_server import version_info

            print(version_info.text())
            return 0
    except UsageError as error:
        print(error, file=sys.stderr)
        return 1
    try:
        validate(opts)
    except UsageError as error:  # TF Serving fails these in BuildAndStart, with this wording
        print(f"Failed to start server. Error: INVALID_ARGUMENT: {error}", file=sys.stderr)
        return 1
    identity = worker_link.WorkerIdentity.from_env(os.environ)
    workers = opts.num_workers or cpu_quota.usable_cpus()
    if identity is None and workers > 1:
        from berth_server import supervisor

        return supervisor.run(opts, args, workers)
    from berth_server.server import run

    return run(opts, worker=identity)
