"""Per-request cost of the REST front door (recording, metrics, access log) over its handler.

    python -m bench.rest_recording

Drives `rest.front.RestFront` in process around a handler that answers a constant, and prints
the microseconds the front adds per request, with the access log off and at 100 % (the README's
"Observability" figures). Best of three runs of 20,000 requests each.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from berth_server.observability import metrics, request_record
from berth_server.observability.access_log import AccessLog
from berth_server.rest.body import BodyBudget
from berth_server.rest.front import RestFront

CALLS = 20_000
_SCOPE = {"type": "http", "method": "POST", "path": "/v1/models/m:predict",
          "raw_path": b"/v1/models/m:predict", "headers": []}


class _ConstantApi:
    async def handle(self, method: str, path: str, body: bytes) -> bytes:
        request_record.note_route("m", "predict")
        return b"{}"


class _NoModels:
    model_names: list[str] = []


async def _send(message: MutableMapping[str, Any]) -> None:
    return None


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _per_call_micros(front: RestFront | None) -> float:
    api = _ConstantApi()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(CALLS):
            if front is None:
                await api.handle("POST", "/v1/models/m:predict", b"")
            else:
                await front(_SCOPE, _receive, _send)
        best = min(best, (time.perf_counter() - started) / CALLS * 1e6)
    return best


def _front(access_log: AccessLog | None) -> RestFront:
    observer = request_record.RequestObserver(metrics.Metrics(), access_log,
                                              is_served={"m"}.__contains__)
    return RestFront(_ConstantApi(), None, _NoModels(), observer,  # type: ignore[arg-type]
                     metrics_path=None, max_body_bytes=1 << 30,
                     body_budget=BodyBudget(1 << 30), read_length=False, enable_cors=False)


async def _measure(log_path: Path) -> dict[str, float]:
    bare = await _per_call_micros(None)
    access_log = AccessLog(str(log_path), sampling_rate=1.0)
    try:
        return {"access log off": await _per_call_micros(_front(None)) - bare,
                "access log at 100 %": await _per_call_micros(_front(access_log)) - bare}
    finally:
        access_log.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(_measure(Path(folder) / "access.jsonl"))
    print("| REST front door | µs per request over the handler |\n|---|---|")
    for name, micros in results.items():
        print(f"| {name} | {micros:.1f} |")


if __name__ == "__main__":
    main()
