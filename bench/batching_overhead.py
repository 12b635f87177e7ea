"""Per-request cost of the batching layer, without transports: BatchingRunner vs ThreadRunner.

    python -m bench.batching_overhead

Client coroutines on one event loop await the runner back to back with batch-1 requests on a
do-nothing model (so only the layer's own work is measured) and, with `--mlp`, on the benchmark
MLP. Reported per request: wall time, CPU of the event-loop thread (what the layer takes from
gRPC/REST handling, measured with `time.thread_time`) and CPU of the whole process (loop plus
batch or worker threads). Medians of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from berth_server.batching import parameters as batching_parameters
from berth_server.batching import runner as batching_runner
from berth_server.servables import inference
from berth_server.service import runners

REPEATS = 5
TOTAL_REQUESTS = 30_000
Close = Callable[[], object]


class _DoNothing:
    def run(self, signature_name: str, inputs: dict[str, np.ndarray],
            output_keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"][:, :1]}


class _Lease:
    def __init__(self, servable: Any) -> None:
        self.servable = servable
        self.name = "m"
        self.version = 1


async def _drive(runner: runners.Runner, lease: Any, clients: int,
                 per_client: int) -> tuple[float, float, float]:
    plan = inference.Plan("serving_default", {"x": np.zeros((1, 10), np.float32)}, ["y"])

    async def client() -> None:
        for _ in range(per_client):
            await runner(lease, plan, 30_000)

    wall, loop_cpu, cpu = time.perf_counter(), time.thread_time(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    n = clients * per_client
    return ((time.perf_counter() - wall) / n * 1e6, (time.thread_time() - loop_cpu) / n * 1e6,
            (time.process_time() - cpu) / n * 1e6)


def _measure(make: Callable[[], tuple[runners.Runner, Close]], lease: Any,
             clients: int) -> list[float]:
    rows = []
    for _ in range(REPEATS):
        runner, close = make()
        asyncio.run(_drive(runner, lease, clients, 50))
        rows.append(asyncio.run(_drive(runner, lease, clients, TOTAL_REQUESTS // clients)))
        close()
    return [statistics.median(column) for column in zip(*rows, strict=True)]


def _thread_runner() -> tuple[runners.Runner, Close]:
    pool = ThreadPoolExecutor(4)
    return runners.ThreadRunner(pool), pool.shutdown


def _batching(timeout_micros: int) -> Callable[[], tuple[runners.Runner, Close]]:
    def make() -> tuple[runners.Runner, Close]:
        runner = batching_runner.BatchingRunner(batching_parameters.BatchingParameters(
            max_batch_size=128, batch_timeout_micros=timeout_micros, num_batch_threads=1,
            max_enqueued_batches=1000))
        return runner, runner.close

    return make


def _mlp_servable() -> Any:
    from berth_server.servables import saved_model
    from examples import export_models

    path = export_models.export_mlp(Path(tempfile.mkdtemp(prefix="berth-bench-")) / "mlp")
    return saved_model.SavedModel(path, tags=["serve"], config=(
        saved_model.session_config(intra_op=0, inter_op=0, gpu_memory_fraction=0)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp", action="store_true", help="also measure the benchmark MLP")
    args = parser.parse_args(argv)
    models = [("do-nothing", _DoNothing())] + ([("mlp", _mlp_servable())] if args.mlp else [])
    runners = [("ThreadRunner", _thread_runner), ("batching, timeout 0", _batching(0)),
               ("batching, timeout 200 µs", _batching(200))]
    print("| model | runner | clients | wall µs/req | loop-thread CPU µs/req | "
          "process CPU µs/req |\n|---|---|---|---|---|---|")
    for model_name, servable in models:
        for clients in (1, 32):
            for runner_name, make in runners:
                wall, loop_cpu, cpu = _measure(make, _Lease(servable), clients)
                print(f"| {model_name} | {runner_name} | {clients} | {wall:.1f} | "
                      f"{loop_cpu:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
