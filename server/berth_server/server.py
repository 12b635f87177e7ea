"""Assembles the server from its options and runs it: `serve()` is awaitable, `run()` owns the loop.

Startup follows TF Serving: load every configured model, fail with its wording if one cannot
become available, then open the gRPC and REST ports. Shutdown (SIGINT/SIGTERM) stops accepting,
lets in-flight requests finish within a grace period, then unloads the models.

As one of several workers (`supervisor`, `worker_link`) it is the same server, except that it
opens its ports, with SO_REUSEPORT, only once every worker has loaded its models, answers its
peers on a socket of its own, and asks them for what must cover every worker
(`service.worker_view`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import uvicorn

from berth_server import errors, heap, worker_link
from berth_server.batching import parameters as batching_parameters
from berth_server.batching import runner as batching_runner
from berth_server.config import model_config, tls
from berth_server.core import aspired_versions_manager, server_core, version_fetching
from berth_server.core.servable_state import ServableId, State
from berth_server.observability import log_format
from berth_server.observability.metrics import Metrics
from berth_server.observability.parts import Observability
from berth_server.observability.request_record import RequestObserver
from berth_server.options import ServerOptions
from berth_server.rest import api as rest_api
from berth_server.rest import body as rest_body
from berth_server.rest import connections as rest_connections
from berth_server.rest import front as rest_front
from berth_server.rpc import interceptor as rpc_interceptor
from berth_server.rpc import profiler as rpc_profiler
from berth_server.rpc import services as rpc_services
from berth_server.rpc import streaming as rpc_streaming
from berth_server.servables import devices, saved_model, tensor_protos, tflite_model, warmup
from berth_server.servables.servable import Servable
from berth_server.service import admission, peers, runners, runtime_metrics, server_view
from berth_server.service.inference_service import InferenceService
from berth_server.service.server_view import ServerView
from berth_server.service.worker_view import WorkerView
from berth_server.storage import saved_model_layout
from berth_server.storage.version_cache import VersionCache

log = logging.getLogger("berth_server")

_INT32_MAX = 2**31 - 1
MAX_REST_BODY_BYTES = 2**31 - 1


def _loader(opts: ServerOptions, metrics: Metrics) -> aspired_versions_manager.LoadFn:
    intra, inter = opts.tensorflow_intra_op_parallelism, opts.tensorflow_inter_op_parallelism
    if opts.tensorflow_session_parallelism > 0:
        intra = inter = opts.tensorflow_session_parallelism
    config = saved_model.session_config(
        intra_op=intra, inter_op=inter, gpu_memory_fraction=opts.per_process_gpu_memory_fraction)
    placements = opts.device_placements

    def load(servable_id: ServableId) -> Servable:
        if opts.enable_batching and opts.enable_per_model_batching_parameters:
            # As in TF Serving, an invalid batching_params.pbtxt fails the version's load.
            batching_parameters.check_model_file(servable_id.path)
        model: Servable
        device = placements.get(servable_id.name)
        tflite = servable_id.path / saved_model_layout.TFLITE_FILE
        if opts.prefer_tflite_model and tflite.is_file():  # as TF Serving: TF Lite when present
            if device is not None:  # its interpreter runs on the CPU, with no device to choose
                raise errors.failed_precondition(
                    f"Model {servable_id.name} is served from {tflite} by the TF Lite "
                    f"interpreter, which cannot be placed on {device}; remove the model from "
                    "--model_device_placement or serve its SavedModel")
            model = tflite_model.TfLiteModel(servable_id.path, num_threads=intra or None)
        else:
            if device is not None:
                log.info("Placing servable version {name: %s version: %d} on %s",
                         servable_id.name, servable_id.version, device)
            model = saved_model.SavedModel(servable_id.path, tags=opts.tags, config=config,
                                           device=device)
        if opts.enable_model_warmup:
            started = time.perf_counter()
            try:
                records = warmup.replay(model, servable_id.path,
                                        iterations=opts.num_request_iterations_for_warmup)
            except Exception as error:
                metrics.record_warmup(str(servable_id.path), str(error),
                                      (time.perf_counter() - started) * 1e6, 0)
                model.close()
                raise
            metrics.record_warmup(str(servable_id.path), "OK",
                                  (time.perf_counter() - started) * 1e6, records)
        return model

    return load


def _grpc_options(opts: ServerOptions, *, shared: bool) -> list[tuple[str, int | str]]:
    # SO_REUSEPORT only for workers sharing the port: otherwise a second server on the same
    # port fails to start instead of silently sharing its connections
    # (--grpc_channel_arguments=grpc.so_reuseport=1 restores it).
    options: dict[str, int | str] = {
        "grpc.max_receive_message_length": opts.max_request_size_bytes or _INT32_MAX,
        "grpc.max_send_message_length": _INT32_MAX, "grpc.so_reuseport": int(shared)}
    for pair in filter(None, opts.grpc_channel_arguments.split(",")):
        key, _, value = pair.partition("=")
        options[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value
    return list(options.items())


class _EmbeddedUvicorn(uvicorn.Server):
    """Uvicorn inside our loop: signals belong to the Berth server, not to uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


# A large JSON body becomes tens of thousands of Python lists; each young-generation collection
# they trigger would also walk TensorFlow's ~300,000 long-lived objects. Those are frozen out of
# collection once a model is loaded, and young collections run less often.
_GEN0_THRESHOLD = 50_000


def _freeze_when_loaded(metrics: Metrics, trimmer: heap.Trimmer,
                        ) -> aspired_versions_manager.StateHook:
    def on_change(servable_id: ServableId, state: State) -> None:
        metrics.on_state_change(servable_id, state)
        if state == State.AVAILABLE:
            gc.freeze()
        if state in (State.AVAILABLE, State.END):  # a load's buffers or a whole version freed
            trimmer.note_change()

    return on_change


async def serve(opts: ServerOptions, *, stop: asyncio.Event | None = None,
                worker: worker_link.WorkerIdentity | None = None) -> None:
    """Load the configured models, serve until `stop` is set, then shut down gracefully.

    `worker`: who this process is when it is one of several workers sharing the ports.
    """
    stop = stop or asyncio.Event()
    observability = Observability.from_options(
        opts, worker=None if worker is None else worker.index)
    devices.check_gpus()
    devices.configure_gpu_memory(opts.per_process_gpu_memory_fraction)
    tls_config = tls.read(opts.ssl_config_file)
    request_pool = ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1)),
                                      thread_name_prefix="berth-run")
    load_pool = ThreadPoolExecutor(max_workers=max(2, opts.num_load_threads),
                                   thread_name_prefix="berth-load")
    cache = VersionCache(Path(opts.model_cache_dir), os.environ)
    trimmer = heap.Trimmer(heap.glibc_trim())
    manager = aspired_versions_manager.AspiredVersionsManager(
        version_fetching.fetching(cache, _loader(opts, observability.metrics)), load_pool,
        max_load_retries=opts.max_num_load_retries,
        load_retry_interval_seconds=opts.load_retry_interval_micros / 1e6,
        fingerprint=version_fetching.fingerprint(cache),
        on_change=version_fetching.releasing(
            cache, _freeze_when_loaded(observability.metrics, trimmer)))
    gc.set_threshold(_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    core = server_core.ServerCore(
        manager, file_system_poll_wait_seconds=opts.file_system_poll_wait_seconds,
        allow_version_labels_for_unavailable_models=opts.allow_version_labels_for_unavailable_models,
        incomplete_version_wait_seconds=opts.incomplete_version_wait_seconds, cache=cache)
    batching = batching_runner.from_options(  # a bad batching file fails startup here
        opts, metrics=observability.metrics.batching if observability.metrics_path else None)
    background = [asyncio.ensure_future(core.poll_forever())]
    # The runner chain: admission first (a refused request costs nothing), then runtime
    # timing, then batching or a worker thread.
    runner = admission.AdmissionRunner(
        runtime_metrics.RuntimeMetricsRunner(
            batching or runners.ThreadRunner(request_pool), observability.metrics),
        observability.metrics, max_inflight=opts.max_inflight_requests)
    trimmer.start(runner)
    service = InferenceService(core, runner,
                               check_method_names=opts.enable_signature_method_name_check)
    observer = observability.request_observer(core.has_model)
    local = server_view.LocalView(core, observability.metrics)
    group = None if worker is None else WorkerView(local, worker)
    view: ServerView = local if group is None else group
    rest = None
    try:
        async with _joined(group, stop) as line:
            if opts.rest_api_open_while_loading:  # probes get /healthz 200, /readyz 503 meanwhile
                rest = await _start_rest(opts, service, view, core, observability, observer,
                                         tls_config, worker)
            loading = core.reload(model_config.from_options(opts))
            if not (await _until_stopped(loading, stop) and (
                    line is None or await _until_stopped(line.loaded(), stop))):
                log.info("Stopped while loading the models")
                if rest is not None:
                    await _drain(opts, None, rest)
                return
            if opts.model_config_file and opts.model_config_file_poll_wait_seconds > 0:
                background.append(asyncio.ensure_future(_poll_config_file(core, opts)))
            grpc_server = await _start_grpc(opts, service, view, observer, tls_config, worker)
            if rest is None:
                rest = await _start_rest(opts, service, view, core, observability, observer,
                                         tls_config, worker)
            log.info("Berth server is serving (gRPC :%d, REST :%d)", opts.port,
                     opts.rest_api_port)
            await stop.wait()
            log.info("Shutting down: finishing in-flight requests")
            await _drain(opts, grpc_server, rest)
    finally:
        for task in background:
            task.cancel()
        if batching is not None:
            batching.close()
        await manager.close()
        trimmer.close()
        request_pool.shutdown(wait=False, cancel_futures=True)
        load_pool.shutdown(wait=False, cancel_futures=True)
        observability.close()


@contextlib.asynccontextmanager
async def _joined(group: WorkerView | None, stop: asyncio.Event,
                  ) -> AsyncIterator[worker_link.WorkerLine | None]:
    """As a worker: the line to the supervisor (its end stops this worker) and the socket where
    the other workers ask this one (`WorkerView.answer`); as the only process: nothing."""
    if group is None:
        yield None
        return
    line = worker_link.WorkerLine(group.identity)
    await line.open(on_gone=stop.set)
    answering = await peers.serve(group.identity.peer_socket(group.identity.index),
                                  group.answer)
    try:
        yield line
    finally:
        answering.close()
        line.close()


async def _until_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run `work` unless `stop` is set first (then cancel it); True when it finished.

    Startup waits for every model to load, which can take minutes, or forever for a version
    that never completes; a pod's SIGTERM must still end the process within its grace period.
    """
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    return False


async def _drain(opts: ServerOptions, grpc_server: grpc.aio.Server | None,
                 rest: tuple[uvicorn.Server, asyncio.Task[None]] | None) -> None:
    """Stop accepting on both ports; in-flight requests get the grace period to finish."""
    grace = opts.shutdown_grace_period_seconds
    waits: list[Awaitable[object]] = [grpc_server.stop(grace)] if grpc_server is not None else []
    if rest is not None:
        rest_server, rest_task = rest
        rest_server.should_exit = True
        waits.append(asyncio.wait_for(asyncio.shield(rest_task), grace + 1))
    results = await asyncio.gather(*waits, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.warning("Shutdown did not drain cleanly: %r", result)


async def _start_grpc(opts: ServerOptions, service: InferenceService, view: ServerView,
                      observer: RequestObserver, tls_config: tls.TlsConfig | None,
                      worker: worker_link.WorkerIdentity | None) -> grpc.aio.Server:
    server = grpc.aio.server(options=_grpc_options(opts, shared=worker is not None),
                             interceptors=[rpc_interceptor.RecordingInterceptor(observer)])
    tensor_content = opts.enable_serialization_as_tensor_content
    # A typed-field fill may grow a tensor to what a request could carry, no further.
    max_fill = opts.max_request_size_bytes or tensor_protos.MAX_FILLED_BYTES
    rpc_services.add_services(server, service, view, tensor_content_outputs=tensor_content,
                              max_fill_bytes=max_fill, enable_reload=opts.enable_reload_config_rpc)
    rpc_streaming.add_service(server, service, tensor_content_outputs=tensor_content,
                              max_fill_bytes=max_fill)
    if opts.enable_grpc_healthcheck_service:
        from berth_server.rpc import health as rpc_health

        await rpc_health.add_service(server)
    if opts.enable_profiler:
        port = rpc_profiler.add_service(server)
        if opts.bind_address:
            log.warning("TensorFlow's profiler server listens on every interface at port %d, "
                        "whatever --bind_address says; --enable_profiler=false closes it", port)
    host = f"[{opts.bind_address}]" if ":" in opts.bind_address else opts.bind_address or "[::]"
    # A Unix socket cannot be shared: binding its path again would take it from the others.
    unix = opts.grpc_socket_path and (worker is None or worker.index == 0)
    if opts.grpc_socket_path and not unix:
        log.info("gRPC's Unix socket %s is served by worker 0", opts.grpc_socket_path)
    for address in ([f"{host}:{opts.port}"] if opts.port else []) + (
            [f"unix:{opts.grpc_socket_path}"] if unix else []):
        try:
            if tls_config is not None:
                server.add_secure_port(address, tls_config.grpc_credentials())
            else:
                server.add_insecure_port(address)
        except RuntimeError as error:  # grpc's "Failed to bind to address ..."
            raise errors.ServingError(errors.Code.UNAVAILABLE, str(error)) from None
    await server.start()
    return server


async def _start_rest(opts: ServerOptions, service: InferenceService, view: ServerView,
                      core: server_core.ServerCore, observability: Observability,
                      observer: RequestObserver, tls_config: tls.TlsConfig | None,
                      worker: worker_link.WorkerIdentity | None,
                      ) -> tuple[uvicorn.Server, asyncio.Task[None]] | None:
    if not opts.rest_api_port:
        return None
    if opts.rest_api_port == opts.port:
        log.error("--rest_api_port cannot be the same as --port. Please use a different port for "
                  "HTTP/REST API. Skipped exporting HTTP/REST API.")
        return None
    max_body = opts.max_request_size_bytes or MAX_REST_BODY_BYTES
    front = rest_front.RestFront(
        rest_api.RestApi(service, view, timeout_ms=opts.rest_api_timeout_in_ms), view, core,
        observer, metrics_path=observability.metrics_path, max_body_bytes=max_body,
        body_budget=rest_body.BodyBudget(opts.rest_api_max_body_bytes_in_flight),
        read_length=bool(opts.max_request_size_bytes or opts.access_log_file),
        enable_cors=opts.rest_api_enable_cors_support)
    pem_files: contextlib.AbstractContextManager[dict[str, object]] = (
        tls_config.uvicorn_kwargs() if tls_config and opts.rest_api_enable_ssl
        else contextlib.nullcontext({}))
    host = opts.bind_address or "0.0.0.0"
    sockets = None if worker is None else _shared_sockets(host, opts.rest_api_port)
    with pem_files as ssl_kwargs:
        config = uvicorn.Config(front, host=host, port=opts.rest_api_port,
                                http=_rest_protocol(opts), ws="none", lifespan="off",
                                access_log=False, log_level="warning", interface="asgi3",
                                timeout_graceful_shutdown=int(
                                    opts.shutdown_grace_period_seconds) or None,
                                **ssl_kwargs)  # type: ignore[arg-type]
        server = _EmbeddedUvicorn(config)
        task = asyncio.ensure_future(server.serve(sockets=sockets))
        while not server.started:  # started: the PEM files were read, they can go
            if task.done():
                task.result()
                raise errors.ServingError(errors.Code.UNAVAILABLE, "REST server failed to start")
            await asyncio.sleep(0.01)
    return server, task


def _shared_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets that every worker opens on the same port (SO_REUSEPORT), so the kernel
    spreads new connections over the workers; one per address `host` resolves to."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _rest_protocol(opts: ServerOptions) -> type[asyncio.Protocol]:
    return rest_connections.protocol_class(rest_connections.ConnectionLimits(
        max_connections=opts.rest_api_max_connections,
        max_header_bytes=opts.rest_api_max_header_bytes,
        max_header_count=opts.rest_api_max_header_count,
        header_timeout_seconds=opts.rest_api_header_timeout_seconds,
        body_timeout_seconds=opts.rest_api_body_timeout_seconds))


async def _poll_config_file(core: server_core.ServerCore, opts: ServerOptions) -> None:
    """Re-read --model_config_file; a broken file keeps the running config and is logged."""
    while True:
        await asyncio.sleep(opts.model_config_file_poll_wait_seconds)
        try:
            await core.reload(model_config.read_file(opts.model_config_file))
        except errors.ServingError as error:
            log.error("Keeping the running model config; reloading %s failed: %s",
                      opts.model_config_file, error.message)


def run(opts: ServerOptions, *, worker: worker_link.WorkerIdentity | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the process exit status."""
    log_format.configure(opts.log_format, worker=None if worker is None else worker.index)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(opts, stop=stop, worker=worker)

    try:
        asyncio.run(main())
    except errors.ServingError as error:
        print(f"Failed to start server. Error: {error.code.name}: {error.message}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"Failed to start server. Error: {error}", file=sys.stderr)
        return 1
    # Drained and unloaded: skip the interpreter's teardown, where TensorFlow's and gRPC's
    # finalizers take seconds that a terminating pod would spend past its grace period.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
