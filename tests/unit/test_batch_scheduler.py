"""The shared batch scheduler with real batch threads, a fake model and (where time matters) a
fake clock: batch formation under concurrent load, rows routed back, padding, splitting,
overflow, deadlines, cancellation, keys that never share a batch, and the threads' priority."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from berth_server import errors
from berth_server.batching.parameters import BatchingParameters
from berth_server.batching.scheduler import BATCH_THREAD_NICENESS, BatchScheduler


class FakeClock:
    """A clock the test moves; it also tells when a batch thread has looked at it.

    A batch thread reads the clock and picks its next batch under the scheduler's lock, so once
    it has read the clock, the next `queued_tasks()` sees what it decided.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._test_thread = threading.get_ident()  # the event loop's, too (asyncio.run)
        self._batch_thread_reads = 0
        self._read = threading.Condition()

    def __call__(self) -> float:
        if threading.get_ident() != self._test_thread:
            with self._read:
                self._batch_thread_reads += 1
                self._read.notify_all()
        return self.now

    def batch_thread_reads(self) -> int:
        with self._read:
            return self._batch_thread_reads

    async def read_by_a_batch_thread(self, *, after: int) -> None:
        def wait() -> bool:
            with self._read:
                return self._read.wait_for(lambda: self._batch_thread_reads > after, 30)

        assert await asyncio.to_thread(wait), "no batch thread looked at the clock"


class Model:
    """Doubles `x` and tags each row with the batch's key; can hold a batch until released."""

    def __init__(self) -> None:
        self.batches: list[tuple[Any, list[float]]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def __call__(self, key: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append((key, inputs["x"].tolist()))
        self.started.set()
        assert self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        return {"y": inputs["x"] * 2, "key": np.full(len(inputs["x"]), key, dtype=object)}

    def hold(self) -> None:
        self.gate.clear()
        self.started.clear()

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 30)


@pytest.fixture
def model() -> Iterator[Model]:
    model = Model()
    yield model
    model.gate.set()


def make(model: Model, clock: Callable[[], float] | None = None, **params: Any) -> BatchScheduler:
    options = BatchingParameters(**{"num_batch_threads": 1, **params})
    if clock is None:
        return BatchScheduler(options, model)
    return BatchScheduler(options, model, clock=clock)


def submit(scheduler: BatchScheduler, values: list[float], key: Any = "k",
           deadline: float = math.inf) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    inputs = {"x": np.array(values, dtype=np.float32)}
    scheduler.schedule(key, inputs, len(values), deadline, future)
    return future


def run(scheduler: BatchScheduler, main: Callable[[], Awaitable[None]]) -> None:
    try:
        asyncio.run(main())  # type: ignore[arg-type]
    finally:
        scheduler.close()


def test_concurrent_requests_are_batched_and_each_gets_exactly_its_rows(model: Model) -> None:
    scheduler = make(model, max_batch_size=32, max_enqueued_batches=100)

    async def main() -> None:
        model.hold()
        first = submit(scheduler, [-1.0])
        await model.wait_started()
        futures = [submit(scheduler, [float(i), float(i) + 0.5]) for i in range(200)]
        model.gate.set()
        results = await asyncio.gather(first, *futures)
        for i, outputs in enumerate(results[1:]):
            assert outputs["y"].tolist() == [2.0 * i, 2.0 * i + 1.0]
        assert max(len(rows) for _, rows in model.batches) == 32
        assert len(model.batches) < 20

    run(scheduler, main)


def test_batches_are_padded_to_allowed_sizes_and_padding_is_dropped(model: Model) -> None:
    scheduler = make(model, max_batch_size=8, allowed_batch_sizes=(2, 4, 8))

    async def main() -> None:
        model.hold()
        first = submit(scheduler, [0.0])
        await model.wait_started()
        rest = [submit(scheduler, [float(i)] * (i % 3 + 1)) for i in range(1, 12)]
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        for i, outputs in enumerate(results):
            assert outputs["y"].tolist() == [2.0 * i] * (i % 3 + 1)
        assert {len(rows) for _, rows in model.batches} <= {2, 4, 8}

    run(scheduler, main)


def test_a_large_request_is_split_and_its_outputs_rejoined(model: Model) -> None:
    scheduler = make(model, max_batch_size=4, enable_large_batch_splitting=True,
                     max_enqueued_batches=100)

    async def main() -> None:
        values = [float(i) for i in range(11)]
        outputs = await submit(scheduler, values)
        assert outputs["y"].tolist() == [2 * v for v in values]
        assert [len(rows) for _, rows in model.batches] == [4, 4, 3]

    run(scheduler, main)


def test_without_splitting_a_large_request_is_invalid(model: Model) -> None:
    scheduler = make(model, max_batch_size=4)

    async def main() -> None:
        with pytest.raises(errors.ServingError) as raised:
            submit(scheduler, [1.0] * 5)
        assert raised.value.code == errors.Code.INVALID_ARGUMENT
        assert raised.value.message == "Task size 5 is larger than maximum batch size 4"

    run(scheduler, main)


def test_a_full_queue_answers_unavailable_at_once_and_recovers(model: Model) -> None:
    scheduler = make(model, max_batch_size=2, max_enqueued_batches=2)

    async def main() -> None:
        model.hold()
        futures = [submit(scheduler, [0.0])]
        await model.wait_started()
        futures += [submit(scheduler, [float(i)]) for i in range(1, 5)]
        with pytest.raises(errors.ServingError) as raised:
            submit(scheduler, [9.0])
        assert raised.value.code == errors.Code.UNAVAILABLE
        assert raised.value.message.startswith(
            "The batch scheduling queue to which this task was submitted is full")
        model.gate.set()
        await asyncio.gather(*futures)
        assert (await submit(scheduler, [4.0]))["y"].tolist() == [8.0]

    run(scheduler, main)


def test_an_open_batch_waits_for_its_timeout_under_a_fake_clock(model: Model) -> None:
    clock = FakeClock()
    scheduler = make(model, clock, max_batch_size=8, batch_timeout_micros=1000)

    async def main() -> None:
        future = submit(scheduler, [1.0])
        reads = clock.batch_thread_reads()
        scheduler.wake()
        await clock.read_by_a_batch_thread(after=reads)  # it has seen the task and decided
        assert scheduler.queued_tasks() == 1 and not model.batches
        second = submit(scheduler, [2.0])
        clock.now = 0.001
        scheduler.wake()
        await asyncio.gather(future, second)
        assert [rows for _, rows in model.batches] == [[1.0, 2.0]]

    run(scheduler, main)


def test_a_request_whose_deadline_passed_while_queued_is_dropped(model: Model) -> None:
    clock = FakeClock()
    scheduler = make(model, clock, max_batch_size=8)

    async def main() -> None:
        model.hold()
        first = submit(scheduler, [1.0])
        await model.wait_started()
        late = submit(scheduler, [2.0], deadline=0.5)
        on_time = submit(scheduler, [3.0], deadline=5.0)
        clock.now = 1.0
        model.gate.set()
        await first
        assert (await on_time)["y"].tolist() == [6.0]
        with pytest.raises(errors.ServingError) as raised:
            await late
        assert raised.value.code == errors.Code.DEADLINE_EXCEEDED
        assert all(2.0 not in rows for _, rows in model.batches)

    run(scheduler, main)


def test_a_cancelled_request_does_not_take_a_batch_slot(model: Model) -> None:
    scheduler = make(model, max_batch_size=8)

    async def main() -> None:
        model.hold()
        first = submit(scheduler, [1.0])
        await model.wait_started()
        cancelled = submit(scheduler, [2.0])
        kept = submit(scheduler, [3.0])
        cancelled.cancel()
        model.gate.set()
        await asyncio.gather(first, kept)
        assert [rows for _, rows in model.batches] == [[1.0], [3.0]]

    run(scheduler, main)


def test_different_keys_never_share_a_batch(model: Model) -> None:
    scheduler = make(model, max_batch_size=64, num_batch_threads=2)

    async def main() -> None:
        model.hold()
        first = submit(scheduler, [0.0], key="a")
        await model.wait_started()
        keys = ["a", "b", "c"]
        futures = [submit(scheduler, [float(i)], key=keys[i % 3]) for i in range(1, 90)]
        model.gate.set()
        results = await asyncio.gather(first, *futures)
        for i, outputs in enumerate(results):
            assert outputs["key"].tolist() == [keys[i % 3]]
            assert outputs["y"].tolist() == [2.0 * i]
        for key, rows in model.batches:
            assert all(keys[int(v) % 3] == key for v in rows)

    run(scheduler, main)


def test_a_model_error_reaches_every_caller_of_the_batch(model: Model) -> None:
    scheduler = make(model, max_batch_size=8)

    async def main() -> None:
        model.fail = errors.invalid_argument("bad input")
        futures = [submit(scheduler, [float(i)]) for i in range(3)]
        for result in await asyncio.gather(*futures, return_exceptions=True):
            assert isinstance(result, errors.ServingError) and result.message == "bad input"
        model.fail = RuntimeError("boom")
        with pytest.raises(errors.ServingError) as raised:
            await submit(scheduler, [1.0])
        assert raised.value.code == errors.Code.INTERNAL

    run(scheduler, main)


def test_closing_fails_waiting_requests_and_refuses_new_ones(model: Model) -> None:
    scheduler = make(model, max_batch_size=8)

    async def main() -> None:
        model.hold()
        first = submit(scheduler, [1.0])
        await model.wait_started()
        waiting = submit(scheduler, [2.0])
        scheduler.close()
        model.gate.set()
        with pytest.raises(errors.ServingError) as raised:
            await waiting
        assert raised.value.code == errors.Code.UNAVAILABLE
        await first
        with pytest.raises(errors.ServingError):
            submit(scheduler, [3.0])

    run(scheduler, main)


def test_pieces_padded_differently_fail_their_request_instead_of_the_thread(model: Model) -> None:
    scheduler = make(model, max_batch_size=4, enable_large_batch_splitting=True,
                     pad_variable_length_inputs=True, max_enqueued_batches=10)

    def submit_2d(rows: list[list[float]]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        scheduler.schedule("k", {"x": np.array(rows, dtype=np.float32)}, len(rows), math.inf,
                           future)
        return future

    async def main() -> None:
        model.hold()
        first = submit(scheduler, [0.0])
        await model.wait_started()
        wide = submit_2d([[1.0, 1.0, 1.0]])
        split = submit_2d([[2.0, 2.0]] * 5)  # 3 rows share a batch with `wide`, 2 run alone
        model.gate.set()
        await first
        assert (await wide)["y"].shape == (1, 3)
        with pytest.raises(errors.ServingError) as raised:
            await split
        assert raised.value.code == errors.Code.FAILED_PRECONDITION
        assert (await submit(scheduler, [5.0]))["y"].tolist() == [10.0]  # the thread lives on

    run(scheduler, main)


def test_an_unexpected_failure_in_a_batch_thread_fails_the_batch_not_the_thread(
        model: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = make(model, max_batch_size=8)
    calls = []

    def broken_deliver(results: list[Any]) -> None:
        calls.append(results)
        if len(calls) == 1:
            raise RuntimeError("bug")
        BatchScheduler._deliver(scheduler, results)

    monkeypatch.setattr(scheduler, "_deliver", broken_deliver)

    async def main() -> None:
        with pytest.raises(errors.ServingError) as raised:
            await submit(scheduler, [1.0])
        assert raised.value.code == errors.Code.INTERNAL
        assert (await submit(scheduler, [2.0]))["y"].tolist() == [4.0]

    run(scheduler, main)


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[tuple[float, str]] = []
        self.runs: list[int] = []
        self.batches: list[tuple[int, int]] = []

    def record_queuing_latency(self, micros: float, *, thread_pool_name: str = "") -> None:
        self.latencies.append((micros, thread_pool_name))

    def record_wrapped_run(self, input_batch_size: int) -> None:
        self.runs.append(input_batch_size)

    def record_batch(self, processed_batch_size: int, padding_size: int) -> None:
        self.batches.append((processed_batch_size, padding_size))


def test_tf_servings_batching_metrics_are_recorded(model: Model) -> None:
    clock, recorder = FakeClock(), Recorder()
    options = BatchingParameters(num_batch_threads=1, max_batch_size=4,
                                 allowed_batch_sizes=(2, 4), enable_large_batch_splitting=True,
                                 thread_pool_name="pool")
    scheduler = BatchScheduler(options, model, clock=clock, metrics=recorder)

    async def main() -> None:
        await submit(scheduler, [1.0])
        clock.now = 0.25
        await submit(scheduler, [1.0] * 7)
        assert recorder.runs == [1, 7]
        assert recorder.batches == [(2, 1), (4, 0), (4, 1)]
        assert recorder.latencies[0] == (0.0, "pool") and len(recorder.latencies) == 3

    run(scheduler, main)


def test_each_queue_keeps_the_options_it_was_created_with(model: Model) -> None:
    scheduler = make(model, max_batch_size=8)
    small = BatchingParameters(max_batch_size=2, allowed_batch_sizes=(2,))

    async def main() -> None:
        with pytest.raises(errors.ServingError, match="Task size 3 is larger than maximum batch "
                                                      "size 2"):
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            scheduler.schedule("small", {"x": np.ones(3, np.float32)}, 3, math.inf, future,
                               small)
        future = asyncio.get_running_loop().create_future()
        scheduler.schedule("small", {"x": np.ones(1, np.float32)}, 1, math.inf, future, small)
        assert (await future)["y"].tolist() == [2.0]
        assert (await submit(scheduler, [1.0] * 3, key="big"))["y"].tolist() == [2.0] * 3
        assert [len(rows) for _, rows in model.batches] == [2, 3]  # padded to 2, not padded

    run(scheduler, main)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
def test_batch_threads_yield_the_cpu_to_the_event_loop_and_only_they_do(model: Model) -> None:
    seen: list[int] = []

    def niceness(key: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return model(key, inputs)

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    scheduler = BatchScheduler(BatchingParameters(num_batch_threads=1), niceness)

    async def main() -> None:
        await submit(scheduler, [1.0])

    run(scheduler, main)
    assert seen == [BATCH_THREAD_NICENESS]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
