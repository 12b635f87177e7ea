"""One batching queue under fake time: packing, timeouts, capacity, splitting."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import numpy as np
import pytest

from berth_server import errors
from berth_server.batching.batch_queue import BatchQueue, Task
from berth_server.batching.parameters import BatchingParameters

Loop = asyncio.AbstractEventLoop


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def task(loop: asyncio.AbstractEventLoop, rows: int, first: int = 0) -> Task:
    inputs = {"x": np.arange(first, first + rows, dtype=np.float32)}
    return Task(inputs, rows, math.inf, loop.create_future())


def queue(**params: object) -> BatchQueue:
    return BatchQueue(BatchingParameters(**params))  # type: ignore[arg-type]


def test_with_a_zero_timeout_the_open_batch_is_schedulable_at_once(loop: Loop) -> None:
    q = queue(max_batch_size=4)
    q.add(task(loop, 1), now=0.0)
    q.add(task(loop, 2), now=0.0)
    batch = q.take(now=0.0)
    assert batch is not None and batch.size == 3 and len(batch.tasks) == 2
    assert not q and q.take(now=0.0) is None


def test_an_under_full_batch_waits_for_the_timeout_of_its_oldest_task(loop: Loop) -> None:
    q = queue(max_batch_size=4, batch_timeout_micros=1000)
    q.add(task(loop, 1), now=10.0)
    q.add(task(loop, 1), now=10.0005)
    assert q.ready_at() == pytest.approx(10.001)
    assert q.take(now=10.0009) is None
    batch = q.take(now=10.001)
    assert batch is not None and batch.size == 2


def test_a_full_batch_is_schedulable_before_the_timeout(loop: Loop) -> None:
    q = queue(max_batch_size=2, batch_timeout_micros=10**9)
    q.add(task(loop, 1), now=0.0)
    assert q.take(now=0.0) is None
    q.add(task(loop, 1), now=0.0)
    assert q.ready_at() == -math.inf
    assert q.take(now=0.0) is not None


def test_a_task_that_does_not_fit_opens_a_new_batch_and_batches_keep_order(loop: Loop) -> None:
    q = queue(max_batch_size=4, batch_timeout_micros=10**9)
    first, second, third = task(loop, 3), task(loop, 2), task(loop, 1)
    for t in (first, second, third):
        q.add(t, now=0.0)
    assert q.num_batches == 2
    batch = q.take(now=0.0)
    assert batch is not None and batch.tasks == [first]
    assert q.take(now=0.0) is None  # the open batch (second, third) waits for its timeout
    batch = q.take(now=2000.0)
    assert batch is not None and batch.tasks == [second, third]


def test_a_full_queue_refuses_a_task_at_once_with_unavailable(loop: Loop) -> None:
    q = queue(max_batch_size=2, max_enqueued_batches=2, batch_timeout_micros=10**9)
    for _ in range(4):
        q.add(task(loop, 1), now=0.0)
    with pytest.raises(errors.ServingError) as raised:
        q.add(task(loop, 1), now=0.0)
    assert raised.value.code == errors.Code.UNAVAILABLE
    assert raised.value.message.startswith(
        "The batch scheduling queue to which this task was submitted is full")
    q.take(now=0.0)
    q.add(task(loop, 1), now=0.0)  # room again once a batch left


def test_a_task_larger_than_max_batch_size_is_invalid_without_splitting(loop: Loop) -> None:
    q = queue(max_batch_size=4)
    with pytest.raises(errors.ServingError) as raised:
        q.add(task(loop, 5), now=0.0)
    assert raised.value.code == errors.Code.INVALID_ARGUMENT
    assert raised.value.message == "Task size 5 is larger than maximum batch size 4"


def test_splitting_fills_the_open_batch_then_whole_batches(loop: Loop) -> None:
    q = queue(max_batch_size=4, enable_large_batch_splitting=True,
              max_execution_batch_size=4, batch_timeout_micros=10**9)
    q.add(task(loop, 1), now=0.0)
    big = task(loop, 10, first=100)
    q.add(big, now=0.0)
    sizes = [[t.size for t in b.tasks] for b in q.batches()]
    assert sizes == [[1, 3], [4], [3]]
    pieces = [t for b in q.batches() for t in b.tasks if t.future is big.future]
    assert [t.piece for t in pieces] == [0, 1, 2]
    rows = np.concatenate([t.inputs["x"] for t in pieces])
    np.testing.assert_array_equal(rows, np.arange(100, 110))
    assert pieces[0].joiner is pieces[2].joiner and pieces[0].joiner.remaining == 3


def test_splitting_is_refused_when_the_pieces_would_overflow_the_queue(loop: Loop) -> None:
    q = queue(max_batch_size=4, enable_large_batch_splitting=True, max_enqueued_batches=2)
    q.add(task(loop, 8), now=0.0)
    with pytest.raises(errors.ServingError) as raised:
        q.add(task(loop, 1), now=0.0)
    assert raised.value.code == errors.Code.UNAVAILABLE
    assert "scheduling capacity is only 0" in raised.value.message


def test_drain_returns_every_waiting_task(loop: Loop) -> None:
    q = queue(max_batch_size=2, batch_timeout_micros=10**9)
    tasks = [task(loop, 1) for _ in range(3)]
    for t in tasks:
        q.add(t, now=0.0)
    assert q.drain() == tasks
    assert not q
