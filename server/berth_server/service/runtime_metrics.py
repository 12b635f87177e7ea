"""Times model execution for `:tensorflow:serving:runtime_latency` and notes the signature.

Wraps any `runners.Runner`. The time is what the request spends in the runner (waiting for a
worker thread or batch, then running), in microseconds, labelled with the model and the API of
the request being served (`Predict`, `Classify`, `Regress`); runtime is `TF1` as in TF Serving's
SavedModel path. Work outside a request (warmup) is not recorded.
"""

from __future__ import annotations

import time

from berth_server.core.aspired_versions_manager import Lease
from berth_server.observability import request_record
from berth_server.observability.metrics import Metrics
from berth_server.servables import inference
from berth_server.servables.servable import Servable
from berth_server.service.runners import Runner

_API = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}


class RuntimeMetricsRunner:
    def __init__(self, inner: Runner, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def __call__(self, lease: Lease[Servable], plan: inference.Plan, timeout_ms: int,
                       ) -> inference.Outputs:
        record = request_record.current.get()
        if record is None:
            return await self._inner(lease, plan, timeout_ms)
        record.signature = plan.signature_name
        started = time.perf_counter()
        outputs = await self._inner(lease, plan, timeout_ms)
        api = _API.get(record.api, record.api)
        self._metrics.record_runtime(lease.name, api, (time.perf_counter() - started) * 1e6)
        return outputs
