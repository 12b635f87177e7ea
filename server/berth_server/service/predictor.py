"""What gRPC and REST share below decoding: ModelSpec resolution, leases, running plans.

A transport decodes its request, calls `lease` to hold the version it asked for (so an unload
waits for it), builds an `inference.Plan` against that version's signatures, and awaits `run`.
Model execution happens off the event loop: on a worker thread, or through the batching layer
when it is on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Protocol

from berth_server import errors
from berth_server.core.aspired_versions_manager import Lease
from berth_server.core.server_core import ServerCore
from berth_server.observability import request_record
from berth_server.servables import inference
from berth_server.servables.saved_model import SavedModel


class Runner(Protocol):
    """Runs one plan on one loaded version; the batching layer is another implementation."""

    async def __call__(self, lease: Lease, plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs: ...


class ThreadRunner:
    """Runs each request's plan on a worker thread (TF releases the GIL while it computes)."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def __call__(self, lease: Lease, plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs:
        servable: SavedModel = lease.servable
        work = asyncio.get_running_loop().run_in_executor(
            self._executor, servable.run, plan.signature_name, plan.inputs, plan.output_aliases)
        if timeout_ms <= 0:
            return await work
        try:
            return await asyncio.wait_for(work, timeout_ms / 1000)
        except TimeoutError:
            raise errors.ServingError(errors.Code.DEADLINE_EXCEEDED,
                                      "Deadline Exceeded") from None


class Predictor:
    def __init__(self, core: ServerCore, runner: Runner, *, check_method_names: bool) -> None:
        self.core = core
        self.run = runner
        self.check_method_names = check_method_names

    @contextlib.contextmanager
    def lease(self, name: str, version: int | None = None,
              label: str | None = None) -> Iterator[Lease]:
        """Hold the version a ModelSpec names (latest when neither version nor label)."""
        if not name:
            raise errors.invalid_argument("ModelSpec has no name specified.")
        resolved = self.core.resolve_version(name, version, label)
        with self.core.manager.lease(name, resolved) as lease:
            request_record.note_version(lease.version)
            yield lease

    @staticmethod
    def signatures(lease: Lease) -> inference.Signatures:
        servable: SavedModel = lease.servable
        return servable.signatures
