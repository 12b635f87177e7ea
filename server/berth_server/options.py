"""The server's options: `tensorflow_model_server`'s flags, with its names and defaults."""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import tempfile

# A local device as TensorFlow spells it: /device:GPU:1, /gpu:1, GPU:1 (any case).
_DEVICE = re.compile(r"/?(?:device:)?([A-Za-z][A-Za-z_]*):([0-9]+)", re.IGNORECASE)


def _default_num_threads() -> int:
    return 4 * (os.cpu_count() or 1)


def _default_model_cache_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "berth-model-cache")


def parse_device_placement(text: str) -> dict[str, str]:
    """`--model_device_placement`'s `model=device,...` as model name → `/device:TYPE:INDEX`.

    Raises ValueError saying which part is wrong.
    """
    placements: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        name, equals, device = (piece.strip() for piece in pair.partition("="))
        if not (name and equals and device):
            raise ValueError(f"'{pair}' is not model=device (e.g. resnet=/device:GPU:1)")
        match = _DEVICE.fullmatch(device)
        if match is None:
            raise ValueError(f"'{device}' (model {name}) is not a device of this server such as "
                             "/device:GPU:0 or /device:CPU:0")
        if name in placements:
            raise ValueError(f"model {name} is placed twice")
        placements[name] = f"/device:{match[1].upper()}:{int(match[2])}"
    return placements


def _default_max_connections() -> int:
    """10,000, or half the open-file limit where that is lower (gRPC and models need files)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(10_000, soft // 2) if soft > 0 else 10_000


@dataclasses.dataclass
class ServerOptions:
    """Every flag of `tensorflow_model_server` that Berth honours, named as there."""

    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    per_process_gpu_memory_fraction: float = 0.0
    saved_model_tags: str = "serve"
    grpc_channel_arguments: str = ""
    enable_grpc_healthcheck_service: bool = False
    ssl_config_file: str = ""
    num_load_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    enable_signature_method_name_check: bool = False
    enable_serialization_as_tensor_content: bool = False
    enable_profiler: bool = True
    prefer_tflite_model: bool = False
    # Accepted for command-line compatibility; they tune parts of TF Serving Berth does not have
    # (its thread pools: REST and gRPC share one event loop here, and loads and unloads share
    # the --num_load_threads pool).
    rest_api_num_threads: int = dataclasses.field(default_factory=_default_num_threads)
    grpc_max_threads: int = dataclasses.field(default_factory=_default_num_threads)
    num_unload_threads: int = 0
    flush_filesystem_caches: bool = True
    remove_unused_fields_from_bundle_metagraph: bool = True
    platform_config_file: str = ""
    tensorflow_session_config_file: str = ""
    use_alts_credentials: bool = False
    num_tflite_pools: int = 1
    num_tflite_interpreters_per_pool: int = 1
    thread_pool_factory_config_file: str = ""
    mixed_precision: str = ""
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    skip_initialize_tpu: bool = False
    version: bool = False
    # Berth's own flags (not in tensorflow_model_server); see README "Observability".
    access_log_file: str = ""  # JSON-lines access log; "-" is stdout; "" is off
    access_log_sampling_rate: float = 1.0  # share of successful requests logged (errors: all)
    log_format: str = "text"  # "text" or "json" for the server's own log lines
    max_request_size_bytes: int = 0  # REST body / gRPC message limit; 0 is TF Serving's (2 GiB)
    max_inflight_requests: int = 1024  # admitted to model execution at once; 0 is unbounded
    bind_address: str = ""  # the address both ports listen on; "" is every interface
    incomplete_version_wait_seconds: float = 60.0  # an unchanging half-written version loads then
    enable_reload_config_rpc: bool = True  # HandleReloadConfigRequest; off: config by file only
    rest_api_enable_ssl: bool = False  # serve REST over TLS with --ssl_config_file
    rest_api_open_while_loading: bool = False  # REST (health, readiness) up before models load
    # What the REST port holds at once (README "Hardening").
    rest_api_max_connections: int = dataclasses.field(default_factory=_default_max_connections)
    rest_api_max_header_bytes: int = 64 << 10  # request line and headers; more is 431
    rest_api_max_header_count: int = 100
    rest_api_header_timeout_seconds: float = 60.0  # headers not complete by then: 408
    rest_api_body_timeout_seconds: float = 300.0  # body not complete this long after headers: 408
    rest_api_max_body_bytes_in_flight: int = 256 << 20  # all bodies at once; one alone may pass it
    shutdown_grace_period_seconds: float = 10.0  # in-flight requests get this long at SIGTERM
    num_workers: int = 1  # server processes sharing the ports (README "Cores"); 0: one per CPU
    # model=device pairs: every version of the model runs its ops there (README "Devices")
    model_device_placement: str = ""
    # Local copies of versions from s3:// gs:// az:// base paths (README "Models in object stores")
    model_cache_dir: str = dataclasses.field(default_factory=_default_model_cache_dir)

    @property
    def tags(self) -> list[str]:
        return [tag for tag in self.saved_model_tags.split(",") if tag]

    @property
    def device_placements(self) -> dict[str, str]:
        """model name → the device its versions run on (`cli.validate` has checked the flag)."""
        return parse_device_placement(self.model_device_placement)
