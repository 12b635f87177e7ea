"""Workers settling one answer over their real peer sockets: reloads, readiness, metrics.

Each worker's own core is a stand-in (`OwnWorker`) that records the configs it is given; the
views, the coordination and the sockets are the server's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors
from berth_server.core.servable_state import State, VersionStatus
from berth_server.observability.metrics import Metrics
from berth_server.service import peers
from berth_server.service.server_view import Readiness
from berth_server.service.worker_view import WorkerView
from berth_server.worker_link import WorkerIdentity


def config(*names: str) -> model_server_config_pb2.ModelServerConfig:
    result = model_server_config_pb2.ModelServerConfig()
    for name in names:
        result.model_config_list.config.add(name=name, base_path=f"/models/{name}")
    return result


def names(given: model_server_config_pb2.ModelServerConfig) -> list[str]:
    return [model.name for model in given.model_config_list.config]


class OwnWorker:
    """One worker's own answers; `refuse` makes it refuse every new config."""

    def __init__(self, *, refuse: bool = False, ready: bool = True) -> None:
        self.refuse = refuse
        self.ready = ready
        self.running = config("a")
        self.given: list[list[str]] = []
        self.metrics = Metrics()

    def rows(self, name: str) -> list[VersionStatus]:
        return [VersionStatus(1, State.AVAILABLE)]

    def own_readiness(self) -> Readiness:
        return Readiness(self.ready, {"a": [1]})

    async def metric_families(self) -> Iterable[Metric]:
        return self.metrics.registry.collect()

    async def apply(self, new: model_server_config_pb2.ModelServerConfig, *,
                    timeout_seconds: float | None) -> model_server_config_pb2.ModelServerConfig:
        self.given.append(names(new))
        if self.refuse:
            raise errors.ServingError(errors.Code.UNKNOWN, "1 model(s) did not become available")
        previous, self.running = self.running, new
        return previous


def with_workers(tmp_path: Path, owns: list[OwnWorker],
                 scenario: Callable[[list[WorkerView]], Awaitable[Any]],
                 *, listening: int | None = None) -> Any:
    """Run `scenario` against workers answering on their sockets (the first `listening`)."""

    async def main() -> Any:
        views = [WorkerView(own, WorkerIdentity(i, len(owns), -1, tmp_path))  # type: ignore[arg-type]
                 for i, own in enumerate(owns)]
        servers = [await peers.serve(view.identity.peer_socket(view.identity.index), view.answer)
                   for view in views[:listening]]
        try:
            return await scenario(views)
        finally:
            for server in servers:
                server.close()

    return asyncio.run(main())


@pytest.mark.parametrize("receiver", [0, 1])
def test_a_reload_reaching_any_worker_is_applied_by_every_worker(tmp_path: Path,
                                                                 receiver: int) -> None:
    owns = [OwnWorker(), OwnWorker()]
    with_workers(tmp_path, owns, lambda views: views[receiver].reload(config("a", "b"),
                                                                      timeout_seconds=30))
    assert [own.given for own in owns] == [[["a", "b"]], [["a", "b"]]]


@pytest.mark.parametrize("receiver", [0, 1])
def test_a_reload_one_worker_refuses_puts_the_others_back_and_fails(tmp_path: Path,
                                                                    receiver: int) -> None:
    owns = [OwnWorker(), OwnWorker(refuse=True)]
    with pytest.raises(errors.ServingError) as raised:
        with_workers(tmp_path, owns, lambda views: views[receiver].reload(config("a", "b"),
                                                                          timeout_seconds=30))
    assert raised.value.message == "1 model(s) did not become available"
    assert owns[0].given == [["a", "b"], ["a"]]  # took it, then got its previous config back
    assert names(owns[0].running) == ["a"]


def test_reloads_from_two_clients_reach_every_worker_in_one_order(tmp_path: Path) -> None:
    owns = [OwnWorker(), OwnWorker(), OwnWorker()]

    async def two_clients(views: list[WorkerView]) -> None:
        await asyncio.gather(views[1].reload(config("b"), timeout_seconds=30),
                             views[2].reload(config("c"), timeout_seconds=30))

    with_workers(tmp_path, owns, two_clients)
    assert owns[0].given == owns[1].given == owns[2].given
    assert sorted(owns[0].given) == [["b"], ["c"]]


def test_readiness_needs_every_worker_and_a_silent_one_is_not_ready(tmp_path: Path) -> None:
    async def readiness(views: list[WorkerView]) -> bool:
        return (await views[0].readiness()).ready

    assert with_workers(tmp_path, [OwnWorker(), OwnWorker()], readiness) is True
    assert with_workers(tmp_path, [OwnWorker(), OwnWorker(ready=False)], readiness) is False
    assert with_workers(tmp_path, [OwnWorker(), OwnWorker()], readiness, listening=1) is False


def test_a_scrape_with_a_silent_worker_fails_instead_of_undercounting(tmp_path: Path) -> None:
    owns = [OwnWorker(), OwnWorker()]
    for own in owns:
        own.metrics.record_request("a", "OK", "predict", "REST", 10.0)

    async def scrape(views: list[WorkerView]) -> list[Metric]:
        return list(await views[0].metric_families())

    families = with_workers(tmp_path, owns, scrape)
    count = next(f for f in families if f.name == ":tensorflow:serving:request_count")
    assert [s.value for s in count.samples] == [2]
    with pytest.raises(errors.ServingError) as raised:
        with_workers(tmp_path, owns, scrape, listening=1)
    assert raised.value.code == errors.Code.UNAVAILABLE
    assert raised.value.message.startswith("Worker 1 did not answer")
