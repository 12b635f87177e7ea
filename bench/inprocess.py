"""Worker: the in-process limit, the model's signature called straight from Python.

    python -m bench.inprocess MODEL_DIR --batch-sizes=1,8,... --seconds=S

Run by the orchestrator on the server's core, so its rows are what one core does with no server
in the way. Prints JSON lines: ``{"event": "loaded", ...}`` as soon as `tf.saved_model.load`
returns (the orchestrator times process start -> that line: the bare start that Berth's start to
AVAILABLE is compared with), then one ``{"event": "result", ...}`` line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from berth_server import heap


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def batch1_latency_ms(call: Callable[[], object], seconds: float) -> float:
    """Median wall time of one batch-1 call, one thread: the floor under a 1-client p50."""
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 20:
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def rows_per_second(call: Callable[[], object], batch: int, threads: int, seconds: float) -> float:
    """Rows/s with ``threads`` Python threads calling back to back for ``seconds``."""
    counts = [0] * threads
    stop = threading.Event()

    def loop(index: int) -> None:
        while not stop.is_set():
            call()
            counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(counts) * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--batch-sizes", required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)

    signature = tf.saved_model.load(args.model_dir).signatures["serving_default"]
    _emit("loaded")
    spec = signature.structured_input_signature[1]["x"]
    rng = np.random.default_rng(0)

    def caller(batch: int) -> Callable[[], object]:
        # A numpy batch, as a server holds after decoding: its conversion is part of the call.
        x = rng.random((batch, *spec.shape[1:]), dtype=np.float32)
        return lambda: signature(x=tf.constant(x))["y"].numpy()

    one = caller(1)
    for _ in range(5):
        one()
    rss_bytes = _rss_bytes()
    trim = heap.glibc_trim()  # what the server does once quiet: its RSS is compared with this
    if trim is not None:
        trim()
    rss_bytes_trimmed = _rss_bytes()
    latency_ms = batch1_latency_ms(one, args.seconds)
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        call = caller(batch)
        call()
        for threads in (1, 2):
            rows.append({"batch": batch, "threads": threads,
                         "rows_per_second": rows_per_second(call, batch, threads, args.seconds)})
    _emit("result", rss_bytes=rss_bytes, rss_bytes_trimmed=rss_bytes_trimmed,
          batch1_p50_ms=latency_ms, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
