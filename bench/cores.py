"""The cores axis: Berth's throughput as it is given more CPUs, one worker process per CPU.

Each point pins the server to k CPUs (the machine's last k) with `--num_workers=k`, batching
on, 32 clients, gRPC then REST. The load tool needs CPUs too: while the server leaves some free
the tool gets them (a thread per CPU); once the server has every CPU, the tool shares them, and
that point's req/s reads low by what the tool takes (its CPU share is in the row). Two columns
compare fairly anyway: req/s per server CPU-second (does a worker do as much with a CPU as one
process did?), and a control row before the last point, ONE worker on the same CPUs with the
same sharing, which separates what the workers add from what more CPUs give one process (TF's,
gRPC's and the batching threads). On a 2-core machine the curve is: 1 CPU (load tool on the
other), then 2 CPUs with 1 worker and with 2 workers, both sharing with the load tool.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import load, models, probe, servers

CONCURRENCY = 32
_MAX_LOAD_THREADS = 8


@dataclasses.dataclass(frozen=True)
class Point:
    server_cpus: tuple[int, ...]
    workers: int
    load_cpus: tuple[int, ...]

    @property
    def shared(self) -> bool:
        """The load tool runs on the server's CPUs."""
        return bool(set(self.load_cpus) & set(self.server_cpus))

    @property
    def load_threads(self) -> int:
        share = len(self.load_cpus) // 4 if self.shared else len(self.load_cpus)
        return max(1, min(_MAX_LOAD_THREADS, share))


def points(cpus: int) -> list[Point]:
    """1, 2, 4, ... CPUs and all of them, a worker per CPU, and the one-worker control row."""
    counts = sorted({2**i for i in range(cpus.bit_length()) if 2**i <= cpus} | {cpus})
    every = tuple(range(cpus))
    plan = [Point(tuple(range(cpus - k, cpus)), k, tuple(range(cpus - k)) or every)
            for k in counts]
    if cpus > 1:
        plan.insert(len(plan) - 1, Point(every, 1, every))
    return plan


def _taskset(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


def measure(spec: models.ModelSpec, *, seconds: float, warmup_seconds: float, runs: int,
            models_dir: Path, logs_dir: Path, log: Callable[[str], None],
            ) -> list[dict[str, Any]]:
    """Every point of the curve for one model, gRPC and REST; one row each."""
    batching_file = logs_dir / f"{spec.name}.batching_parameters.txt"
    batching_file.write_text(spec.batching_parameters)
    payloads = models.Payloads.under(models_dir, spec.name)
    rows: list[dict[str, Any]] = []
    for point in points(len(os.sched_getaffinity(0))):
        grpc_port, rest_port = servers.free_port(), servers.free_port()
        command = servers.berth_command(spec.name, spec.version_dir(models_dir).parent,
                                        grpc_port, rest_port, batching_file,
                                        workers=point.workers)
        name = f"{spec.name}-cores-{len(point.server_cpus)}-workers-{point.workers}"
        with servers.running(name, command, cpu=_taskset(point.server_cpus), logs_dir=logs_dir,
                             grpc_port=grpc_port, rest_port=rest_port,
                             ready=servers.berth_available(rest_port, spec.name)) as server:
            good = probe.grpc_response_bytes(grpc_port, payloads.grpc_frame)
            path = f"/v1/models/{spec.name}:predict"
            probe.rest_predictions(rest_port, path, payloads.rest_body)
            for transport, port, body in (("grpc", grpc_port, payloads.grpc_frame),
                                          ("rest", rest_port, payloads.rest_body)):
                spec_load = load.Load(transport, port, body, CONCURRENCY, path,
                                      good if transport == "grpc" else 0, point.load_threads)
                cpu, pid = _taskset(point.load_cpus), server.process.pid
                load.run_once(spec_load, warmup_seconds, cpu=cpu, server_pid=pid)
                results = [load.run_once(spec_load, seconds, cpu=cpu, server_pid=pid)
                           for _ in range(runs)]
                row = _row(spec, point, transport, results, server.tree_rss_bytes)
                log(f"  {spec.name:<12} {transport:<4} {len(point.server_cpus)} CPU(s) "
                    f"{point.workers} worker(s) load on {row['load_cpus']:<14} "
                    f"{row['requests_per_second']:8.0f} req/s  "
                    f"{row['requests_per_server_cpu_second']:7.0f} req per server CPU-s")
                rows.append(row)
    return rows


def _row(spec: models.ModelSpec, point: Point, transport: str, results: list[load.RunResult],
         rss_bytes: int) -> dict[str, Any]:
    row = dataclasses.asdict(load.median_of(results))
    rates = [result.requests_per_second for result in results]
    per_cpu = row["requests_per_second"] / row["server_cpu_share"] if row[
        "server_cpu_share"] else 0.0
    row.update(model=spec.name, transport=transport, concurrency=CONCURRENCY,
               server_cpus=len(point.server_cpus),
               workers=point.workers, load_threads=point.load_threads,
               load_cpus=_taskset(point.load_cpus) + (" (shared)" if point.shared else ""),
               rps_min=min(rates), rps_max=max(rates),
               requests_per_server_cpu_second=per_cpu, rss_mib=rss_bytes / 2**20)
    return row
