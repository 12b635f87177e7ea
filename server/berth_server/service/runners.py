"""How a plan runs on a leased version: the `Runner` protocol and the plain thread runner.

The server assembles a chain of runners (admission → runtime timing → batching or a worker
thread, in `server.py`); each link takes the same call. Model execution never runs on the event
loop: TensorFlow releases the GIL while it computes, so worker threads overlap with the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Protocol

from berth_server import errors
from berth_server.core.aspired_versions_manager import Lease
from berth_server.servables import inference
from berth_server.servables.servable import Servable


class Runner(Protocol):
    """Runs one plan on one leased version; `timeout_ms` <= 0 means no deadline."""

    async def __call__(self, lease: Lease[Servable], plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs: ...


class ThreadRunner:
    """Runs each request's plan on a worker thread of `executor`."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def __call__(self, lease: Lease[Servable], plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs:
        work = asyncio.get_running_loop().run_in_executor(
            self._executor, lease.servable.run, plan.signature_name, plan.inputs,
            plan.output_aliases)
        if timeout_ms <= 0:
            return await work
        try:
            return await asyncio.wait_for(work, timeout_ms / 1000)
        except TimeoutError:
            raise errors.ServingError(errors.Code.DEADLINE_EXCEEDED,
                                      "Deadline Exceeded") from None
