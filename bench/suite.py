"""The benchmark run: every baseline, server and load level, measured one after another.

One function per kind of measurement; `run` strings them together and returns a JSON-ready dict
that `bench.report` renders. Order matters only for fairness: all rows of a model come from the
same minutes of the same machine, so their ratios hold even while the absolute numbers drift
with whatever else the machine is doing.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from bench import cores, load, models, probe, servers
from berth_server.protos import batching_pb2

LOAD_CPU = 0
SERVER_CPU = 1


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long and how wide to measure; `--quick` shrinks every field."""

    models: tuple[str, ...] = ("mlp", "mobilenet_v2")
    concurrencies: tuple[int, ...] = (1, 8, 32, 128)
    seconds: float = 5.0
    """Length of one measured run."""
    warmup_seconds: float = 2.0
    """One unrecorded run before each concurrency level."""
    runs: int = 3
    """Measured runs per level; rows quote their medians."""
    inprocess_seconds: float = 2.0
    """Length of each in-process measurement (per batch size and thread count)."""


QUICK = Settings(models=("mlp",), concurrencies=(1, 32), seconds=2.0, warmup_seconds=1.0,
                 runs=1, inprocess_seconds=0.3)


@dataclasses.dataclass(frozen=True)
class Paths:
    models_dir: Path
    logs_dir: Path
    peer_venv: Path


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def inprocess(spec: models.ModelSpec, settings: Settings, paths: Paths) -> dict[str, Any]:
    """The in-process limit on the server core; also the bare start time and the bare RSS."""
    _log(f"{spec.name}: in-process limit (batch sizes {spec.batch_sizes}, 1 and 2 threads)")
    command = ["taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "bench.inprocess",
               str(spec.version_dir(paths.models_dir)),
               f"--batch-sizes={','.join(map(str, spec.batch_sizes))}",
               f"--seconds={settings.inprocess_seconds}"]
    started = time.monotonic()
    result: dict[str, Any] = {}
    with (paths.logs_dir / f"{spec.name}-inprocess.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        assert process.stdout is not None
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "loaded":
                result["bare_start_seconds"] = time.monotonic() - started
            else:
                result.update(event)
        if process.wait() != 0:
            raise RuntimeError(f"in-process worker failed; see {log.name}")
    result.pop("event", None)
    result["best"] = max(result["rows"], key=lambda row: row["rows_per_second"])
    return result


def _series(server: servers.Server, label: str, transport: str, batching: bool | None,
            spec: models.ModelSpec, settings: Settings, paths: Paths,
            concurrencies: tuple[int, ...] | None = None) -> Iterator[dict[str, Any]]:
    """One server on one transport at every concurrency (or those given): warm-up, then the
    median of runs."""
    payloads = models.Payloads.under(paths.models_dir, spec.name)
    if transport == "grpc":
        good = probe.grpc_response_bytes(server.grpc_port, payloads.grpc_frame)
        body, port, path = payloads.grpc_frame, server.grpc_port, ""
    else:
        path = f"/v1/models/{spec.name}:predict"
        probe.rest_predictions(server.rest_port, path, payloads.rest_body)
        good, body, port = 0, payloads.rest_body, server.rest_port
    for concurrency in concurrencies or settings.concurrencies:
        spec_load = load.Load(transport, port, body, concurrency, path, good)
        pid = server.process.pid
        load.run_once(spec_load, settings.warmup_seconds, cpu=LOAD_CPU, server_pid=pid)
        results = [load.run_once(spec_load, settings.seconds, cpu=LOAD_CPU, server_pid=pid)
                   for _ in range(settings.runs)]
        row = dataclasses.asdict(load.median_of(results))
        rates = [result.requests_per_second for result in results]
        row.update(server=label, transport=transport, batching=batching, concurrency=concurrency,
                   rps_min=min(rates), rps_max=max(rates))
        _log(f"  {label:<24} {transport:<4} c={concurrency:<3} {row['completed']:6} done "
             f"{row['requests_per_second']:8.0f} req/s  p50 {row['p50_ms']:7.2f} ms  "
             f"p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}  "
             f"load-gen CPU {row['loadgen_cpu_share']:.0%}")
        yield row


HANDOFF_LABEL = "grpc.aio do-nothing + batch hand-off"
HANDOFF_CONCURRENCY = 32


def ceilings(settings: Settings, paths: Paths) -> list[dict[str, Any]]:
    """The do-nothing grpc.aio and ASGI servers under the MLP's requests, and the grpc.aio one
    answering through a batch thread (at 32 clients: the batching targets' load)."""
    timeout = text_format.Parse(models.MLP.batching_parameters,
                                batching_pb2.BatchingParameters()).batch_timeout_micros.value
    rows: list[dict[str, Any]] = []
    for kind, transport, label, extra in (
            ("grpc", "grpc", "grpc.aio do-nothing", []),
            ("asgi", "rest", "ASGI do-nothing", []),
            ("grpc", "grpc", HANDOFF_LABEL, [f"--handoff_micros={timeout}"])):
        _log(f"ceiling: {label}")
        port = servers.free_port()
        concurrencies = ((HANDOFF_CONCURRENCY,) if extra and HANDOFF_CONCURRENCY in
                         settings.concurrencies else None)
        with servers.running(f"null-{kind}", servers.null_command(kind, port) + extra,
                             cpu=SERVER_CPU, logs_dir=paths.logs_dir, grpc_port=port,
                             rest_port=port, ready=servers.port_ready(port)) as server:
            rows += _series(server, label, transport, None, models.MLP, settings, paths,
                            concurrencies)
    return rows


def berth(spec: models.ModelSpec, batching: bool, settings: Settings, paths: Paths
          ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Berth on both transports; also its start to AVAILABLE and its resident memory."""
    label = "berth+batching" if batching else "berth"
    _log(f"{spec.name}: {label}")
    batching_file = None
    if batching:
        batching_file = paths.logs_dir / f"{spec.name}.batching_parameters.txt"
        batching_file.write_text(spec.batching_parameters)
    grpc_port, rest_port = servers.free_port(), servers.free_port()
    command = servers.berth_command(spec.name, spec.version_dir(paths.models_dir).parent,
                                    grpc_port, rest_port, batching_file)
    with servers.running(f"{spec.name}-{label}", command, cpu=SERVER_CPU,
                         logs_dir=paths.logs_dir, grpc_port=grpc_port, rest_port=rest_port,
                         ready=servers.berth_available(rest_port, spec.name)) as server:
        _log(f"  AVAILABLE after {server.start_to_ready_seconds:.2f} s")
        payloads = models.Payloads.under(paths.models_dir, spec.name)
        probe.grpc_response_bytes(server.grpc_port, payloads.grpc_frame)
        probe.rest_predictions(server.rest_port, f"/v1/models/{spec.name}:predict",
                               payloads.rest_body)
        # Measured before the load: what it takes to hold the model and answer, comparable
        # with the bare process (which has made a few calls too); load adds buffers later.
        started = {"start_to_available_seconds": server.start_to_ready_seconds,
                   "rss_bytes_after_one_request": server.rss_bytes}
        started["rss_bytes_quiet_after_one_request"] = server.quiet_rss_bytes()
        rows = list(_series(server, label, "grpc", batching, spec, settings, paths))
        rows += _series(server, label, "rest", batching, spec, settings, paths)
        started["rss_bytes_after_load"] = server.rss_bytes
        started["rss_bytes_quiet_after_load"] = server.quiet_rss_bytes()
        started["peak_rss_bytes"] = server.peak_rss_bytes
    return rows, started


def peer(spec: models.ModelSpec, settings: Settings, paths: Paths) -> list[dict[str, Any]]:
    """KServe's ModelServer over REST (its v1 protocol is TF Serving's predict body)."""
    label = f"kserve {paths.peer_venv.name.split('-')[1]}"
    _log(f"{spec.name}: peer {label}")
    port = servers.free_port()
    command = servers.peer_command(paths.peer_venv, spec.name, spec.version_dir(paths.models_dir),
                                   port)
    with servers.running(f"{spec.name}-peer", command, cpu=SERVER_CPU, logs_dir=paths.logs_dir,
                         rest_port=port, ready=servers.kserve_ready(port, spec.name)) as server:
        return list(_series(server, label, "rest", None, spec, settings, paths))


def overload(settings: Settings, paths: Paths) -> dict[str, Any]:
    """Berth at twice its capacity (`bench.overload`, a worker on the load core)."""
    _log("overload: the busy model at 2x capacity, gRPC then REST")
    command = ["taskset", "-c", str(LOAD_CPU), sys.executable, "-m", "bench.overload", "--json",
               f"--seconds={settings.seconds}", f"--models-dir={paths.models_dir}",
               f"--logs-dir={paths.logs_dir}"]
    with (paths.logs_dir / "overload-worker.log").open("wb") as log:
        done = subprocess.run(command, cwd=servers.ROOT, stdout=subprocess.PIPE, stderr=log,
                              check=False)
    if done.returncode != 0:
        raise RuntimeError(f"overload worker failed; see {log.name}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def cores_axis(settings: Settings, paths: Paths) -> list[dict[str, Any]]:
    """Berth on 1, 2, ... CPUs with a worker per CPU (`bench.cores`), every model."""
    rows: list[dict[str, Any]] = []
    for name in settings.models:
        _log(f"{name}: cores axis, {cores.CONCURRENCY} clients, batching on")
        rows += cores.measure(models.MODELS[name], seconds=settings.seconds,
                              warmup_seconds=settings.warmup_seconds, runs=settings.runs,
                              models_dir=paths.models_dir, logs_dir=paths.logs_dir, log=_log)
    return rows


def run(settings: Settings, paths: Paths) -> dict[str, Any]:
    results: dict[str, Any] = {"models": {}}
    if "mlp" in settings.models:
        results["ceilings"] = ceilings(settings, paths)
    for name in settings.models:
        spec = models.MODELS[name]
        entry: dict[str, Any] = {"inprocess": inprocess(spec, settings, paths), "series": [],
                                 "batching_parameters": " ".join(
                                     spec.batching_parameters.split())}
        for batching in (False, True):
            rows, started = berth(spec, batching, settings, paths)
            entry["series"] += rows
            entry["berth_batching_off" if not batching else "berth_batching_on"] = started
        entry["series"] += peer(spec, settings, paths)
        results["models"][name] = entry
    results["cores"] = cores_axis(settings, paths)
    results["overload"] = overload(settings, paths)
    return results
