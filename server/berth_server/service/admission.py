"""Bounded admission to model execution: overload is answered at once, never queued.

Wraps any `runners.Runner` (the thread runner or the batching layer). At most
`max_inflight` requests may be waiting for or inside model execution across the server; the
next one gets UNAVAILABLE (HTTP 503) immediately, so under 2x load the excess fails fast,
memory stays flat and latency of the admitted requests stays bounded. The per-model count is
the `:berth:serving:queue_depth` gauge. Runs on the event loop only (no locks needed).
"""

from __future__ import annotations

from berth_server import errors
from berth_server.core.aspired_versions_manager import Lease
from berth_server.observability.metrics import Metrics
from berth_server.servables import inference
from berth_server.servables.servable import Servable
from berth_server.service.runners import Runner


class AdmissionRunner:
    def __init__(self, inner: Runner, metrics: Metrics, *, max_inflight: int) -> None:
        self._inner = inner
        self._metrics = metrics
        self._max_inflight = max_inflight if max_inflight > 0 else 2**62
        self.inflight = 0
        self.admitted = 0  # ever: whether requests ran since a moment (`heap.Trimmer`)

    async def __call__(self, lease: Lease[Servable], plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs:
        if self.inflight >= self._max_inflight:
            raise errors.unavailable(
                f"Server is overloaded: {self.inflight} requests are already queued for model "
                "execution (--max_inflight_requests); retry later")
        depth = self._metrics.queue_depth
        name = lease.name
        self.inflight += 1
        self.admitted += 1
        depth[name] = depth.get(name, 0) + 1
        try:
            return await self._inner(lease, plan, timeout_ms)
        finally:
            self.inflight -= 1
            depth[name] -= 1
