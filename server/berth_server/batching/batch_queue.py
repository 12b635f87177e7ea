"""One batching queue: tasks packed into batches, TF's SharedBatchScheduler queue semantics.

A queue holds closed batches (waiting for a thread) and one open batch that collects tasks.
A task goes into the open batch when it fits; otherwise the open batch is closed and a new one
opened — unless the queue already holds `max_enqueued_batches` batches (the open one counts),
then the task is refused at once with UNAVAILABLE. The open batch becomes schedulable when
full, or once its oldest task has waited `batch_timeout_micros` (at once when that is 0).

Splitting (`enable_large_batch_splitting`): a task that does not fit the open batch is cut into
pieces — the open batch's remaining room, then batches of `max_execution_batch_size` — which
share a `Joiner` that rejoins their outputs. Unlike TF, whose input limit stays max_batch_size,
any task that the queue has room for is accepted (issue 6: larger requests are split).

Not thread-safe: the scheduler calls every method under its lock. Time is passed in (seconds
of the scheduler's clock), so the logic is tested without threads or waiting.
"""

from __future__ import annotations

import asyncio
import collections
import math
from typing import Any

from berth_server import errors
from berth_server.batching.parameters import BatchingParameters
from berth_server.batching.tensors import Tensors

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class Joiner:
    """Collects the outputs of a split task's pieces; the last piece delivers the whole."""

    __slots__ = ("parts", "remaining", "failed", "size")

    def __init__(self, pieces: int, size: int) -> None:
        self.parts: list[Tensors | None] = [None] * pieces
        self.remaining = pieces
        self.failed = False
        self.size = size


class Task:
    """One request (or one piece of a split request) waiting for a batch."""

    __slots__ = ("inputs", "size", "deadline", "future", "enqueued_at", "joiner", "piece")

    def __init__(self, inputs: Tensors, size: int, deadline: float,
                 future: asyncio.Future[Any], enqueued_at: float = 0.0,
                 joiner: Joiner | None = None, piece: int = 0) -> None:
        self.inputs = inputs
        self.size = size
        self.deadline = deadline
        self.future = future
        self.enqueued_at = enqueued_at
        self.joiner = joiner
        self.piece = piece


class Batch:
    __slots__ = ("tasks", "size", "opened_at")

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.size = 0
        self.opened_at = math.inf

    def add(self, task: Task, now: float) -> None:
        if not self.tasks:
            self.opened_at = now
        self.tasks.append(task)
        self.size += task.size


class BatchQueue:
    def __init__(self, params: BatchingParameters) -> None:
        self.params = params
        self._limit = params.batch_size_limit
        self._timeout_seconds = params.batch_timeout_micros / 1e6
        self._max_batches = params.max_enqueued_batches
        self._splitting = params.enable_large_batch_splitting
        self._closed: collections.deque[Batch] = collections.deque()
        self._open = Batch()

    def __bool__(self) -> bool:
        """Whether any task waits here."""
        return bool(self._closed or self._open.tasks)

    @property
    def num_batches(self) -> int:
        """Batches held, the open one included (TF's num_enqueued_batches)."""
        return len(self._closed) + 1

    def add(self, task: Task, now: float) -> None:
        """Enqueue a task, split if allowed and needed; raises when it cannot be taken."""
        room = self._limit - self._open.size
        if task.size <= room:
            self._open.add(task, now)
        elif self._splitting:
            self._add_split(task, room, now)
        elif task.size > self._limit:
            raise errors.invalid_argument(
                f"Task size {task.size} is larger than maximum batch size {self._limit}")
        elif self.num_batches >= self._max_batches:
            raise errors.unavailable(
                f"{QUEUE_FULL}; currently {self.num_batches} batches enqueued and "
                f"max_enqueued_batches is {self._max_batches}")
        else:
            self._start_new_batch()
            self._open.add(task, now)

    def _add_split(self, task: Task, room: int, now: float) -> None:
        capacity = (self._max_batches - self.num_batches) * self._limit + room
        if task.size > capacity:
            raise errors.unavailable(
                f"{QUEUE_FULL}; task size is {task.size} but scheduling capacity is only "
                f"{capacity} (num_enqueued_batches={self.num_batches}, max_enqueued_batches="
                f"{self._max_batches}, open_batch_size={self._open.size}, "
                f"max_execution_batch_size={self._limit})")
        rest = task.size - room
        sizes = ([room] if room else []) + [self._limit] * (rest // self._limit)
        if rest % self._limit:
            sizes.append(rest % self._limit)
        joiner = Joiner(len(sizes), task.size)
        start = 0
        for index, size in enumerate(sizes):
            stop = start + size
            piece = Task({k: v[start:stop] for k, v in task.inputs.items()}, size,
                         task.deadline, task.future, task.enqueued_at, joiner, index)
            if self._open.size + size > self._limit:
                self._start_new_batch()
            self._open.add(piece, now)
            start = stop

    def _start_new_batch(self) -> None:
        self._closed.append(self._open)
        self._open = Batch()

    def ready_at(self) -> float:
        """When a batch can be taken: -inf if now, inf if no task waits."""
        if self._closed or self._open.size >= self._limit:
            return -math.inf
        return self._open.opened_at + self._timeout_seconds

    def take(self, now: float) -> Batch | None:
        """The next schedulable batch, or None if none is schedulable at `now`."""
        if self._closed:
            return self._closed.popleft()
        if self._open.tasks and (self._open.size >= self._limit
                                 or now >= self._open.opened_at + self._timeout_seconds):
            batch, self._open = self._open, Batch()
            return batch
        return None

    def batches(self) -> list[Batch]:
        return [*self._closed, self._open]

    def drain(self) -> list[Task]:
        """Remove and return every waiting task (at shutdown)."""
        tasks = [t for batch in (*self._closed, self._open) for t in batch.tasks]
        self._closed.clear()
        self._open = Batch()
        return tasks
