"""Per-call cost of the ways to run a SavedModel signature, and of leaving the event loop.

    python -m bench.execution_paths

Prints one table measured in one run: TF2 `signatures[...]` call, TF1 `Session.run`,
`Session.make_callable`, a callable from CallableOptions (what Berth uses), and the same
callable behind `loop.run_in_executor` (what a request pays to run off the event loop).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from examples import export_models

CALLS = 2000
REPEATS = 5


def _per_call_micros(fn: Callable[[], object]) -> float:
    for _ in range(200):
        fn()
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        samples.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(samples)


def _executor_micros(fn: Callable[[], object]) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(4) as pool:
            for _ in range(200):
                await loop.run_in_executor(pool, fn)
            samples = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                for _ in range(CALLS):
                    await loop.run_in_executor(pool, fn)
                samples.append((time.perf_counter() - start) / CALLS * 1e6)
            return statistics.median(samples)

    return asyncio.run(main())


def measure(model_dir: Path) -> list[tuple[str, float]]:
    x = np.random.default_rng(0).random((1, 10), dtype=np.float32)
    rows: list[tuple[str, float]] = []
    loaded = tf.saved_model.load(str(model_dir))
    signature = loaded.signatures["serving_default"]
    tensor = tf.constant(x)
    rows.append(("TF2 signatures['serving_default'](x)",
                 _per_call_micros(lambda: signature(x=tensor))))

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.load(session, ["serve"], str(model_dir))
    info = meta.signature_def["serving_default"]
    feed, fetch = info.inputs["x"].name, info.outputs["y"].name
    rows.append(("TF1 Session.run", _per_call_micros(lambda: session.run(fetch, {feed: x}))))
    make_callable = session.make_callable(graph.get_tensor_by_name(fetch),
                                          feed_list=[graph.get_tensor_by_name(feed)])
    rows.append(("TF1 Session.make_callable", _per_call_micros(lambda: make_callable(x))))
    options = config_pb2.CallableOptions(feed=[feed], fetch=[fetch])
    from_options = session._make_callable_from_options(options)
    rows.append(("callable from CallableOptions (Berth)",
                 _per_call_micros(lambda: from_options(x))))
    rows.append(("  + loop.run_in_executor round trip", _executor_micros(lambda: from_options(x))))
    rows.append(("  empty function via run_in_executor", _executor_micros(lambda: None)))
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        version_dir = export_models.export_mlp(Path(tmp) / "mlp")
        rows = measure(version_dir)
    print(f"| execution path (benchmark MLP, batch 1) | µs per call, median of {REPEATS} |")
    print("|---|---|")
    for name, micros in rows:
        print(f"| {name} | {micros:.0f} |")


if __name__ == "__main__":
    main()
