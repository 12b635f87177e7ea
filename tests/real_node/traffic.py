"""Clients of the scenarios that route through the Gateway: REST and gRPC predictions of the
`affine` model (version v answers 0.5·x + v, so x = 0 names the version), one at a time or as a
steady stream that records every failure while the cluster changes underneath it."""

from __future__ import annotations

import collections
import dataclasses
import threading
import traceback
from collections.abc import Callable

import traefik
import workloads

GATEWAY_PORT = 8000
MODEL = "affine"
STREAM_INTERVAL_SECONDS = 0.02
"""Pause between a stream's requests: a steady client, not a load test of the 2-core node."""


def wait_canary_weight(gateway: traefik.Traefik, namespace: str, weight: int) -> None:
    """Wait until Traefik splits both of `affine`'s routes (REST and gRPC) stable/canary as
    100 - `weight` / `weight`: the operator applies a weight once the canary is ready."""
    for kind, route in (("HTTPRoute", f"{MODEL}-http"), ("GRPCRoute", f"{MODEL}-grpc")):
        gateway.wait_for_route(
            kind,  # type: ignore[arg-type]
            namespace,
            route,
            weights=(100 - weight, weight),
            timeout_seconds=workloads.ROLLOUT_SECONDS,
        )


def rest_version(address: str = "127.0.0.1") -> int:
    (answer,) = workloads.rest_predict(address, MODEL, [0.0], port=GATEWAY_PORT)
    return round(answer)


class GrpcVersions:
    """One long-lived channel through the Gateway, as a real client keeps it."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.client = workloads.GrpcClient(address, port=GATEWAY_PORT)

    def __call__(self) -> int:
        version, (answer,) = self.client.predict(MODEL, [0.0])
        assert version == round(answer), (version, answer)
        return version

    def close(self) -> None:
        self.client.close()


def shares(call: Callable[[], int], count: int) -> dict[int, float]:
    """The share of `count` answers that came from each version."""
    seen = collections.Counter(call() for _ in range(count))
    return {version: hits / count for version, hits in seen.items()}


@dataclasses.dataclass
class Stream:
    """A thread sending one kind of request until stopped; every answer and failure is kept,
    labelled with the phase (`mark`) it happened in."""

    name: str
    call: Callable[[], int]
    phase: str = "start"
    answers: collections.Counter[tuple[str, int]] = dataclasses.field(
        default_factory=collections.Counter
    )
    failures: list[str] = dataclasses.field(default_factory=list)
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def mark(self, phase: str) -> None:
        self.phase = phase

    def count(self, phase: str) -> int:
        return sum(n for (p, _), n in self.answers.items() if p == phase)

    def versions(self, phase: str) -> set[int]:
        return {v for (p, v) in self.answers if p == phase}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            phase = self.phase
            try:
                self.answers[(phase, self.call())] += 1
            except Exception as error:  # every failure is a finding: keep what it was
                summary = traceback.format_exception_only(error)[-1].strip()
                self.failures.append(f"{phase}: {summary}")
            self._stop.wait(STREAM_INTERVAL_SECONDS)
