"""What the transports ask of the whole server besides inference: model status, readiness,
metrics and config reloads.

One process answers from its own core (`LocalView`). With several worker processes every
answer must cover all of them (`worker_view.WorkerView`), so the transports ask through
`ServerView` and never know which they have; inference itself never comes here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Protocol

from prometheus_client.metrics_core import Metric
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors
from berth_server.core import model_status
from berth_server.core.servable_state import VersionStatus
from berth_server.core.server_core import ServerCore
from berth_server.observability.metrics import Metrics


@dataclasses.dataclass(frozen=True)
class Readiness:
    ready: bool
    """Every configured model has an AVAILABLE version (and there is a model)."""
    available: dict[str, list[int]]
    """Each configured model's AVAILABLE versions."""


class ServerView(Protocol):
    async def status(self, name: str, version: int | None,
                     ) -> get_model_status_pb2.GetModelStatusResponse: ...

    async def readiness(self) -> Readiness: ...

    async def metric_families(self) -> Iterable[Metric]: ...

    async def reload(self, config: model_server_config_pb2.ModelServerConfig, *,
                     timeout_seconds: float | None) -> None:
        """Apply a model_config_list as HandleReloadConfigRequest does, or raise ServingError
        and keep the running one."""


class LocalView:
    """This process's own answers: the whole server when it is the only process."""

    def __init__(self, core: ServerCore, metrics: Metrics) -> None:
        self.core = core
        self._metrics = metrics

    def rows(self, name: str) -> list[VersionStatus]:
        return self.core.manager.statuses(name)

    async def status(self, name: str, version: int | None,
                     ) -> get_model_status_pb2.GetModelStatusResponse:
        return model_status.model_status(self.rows(name), name, version)

    def own_readiness(self) -> Readiness:
        available = {name: self.core.manager.available_versions(name)
                     for name in self.core.model_names}
        return Readiness(bool(available) and self.core.is_ready(), available)

    async def readiness(self) -> Readiness:
        return self.own_readiness()

    async def metric_families(self) -> Iterable[Metric]:
        return self._metrics.registry.collect()

    async def reload(self, config: model_server_config_pb2.ModelServerConfig, *,
                     timeout_seconds: float | None) -> None:
        await self.apply(config, timeout_seconds=timeout_seconds)

    async def apply(self, config: model_server_config_pb2.ModelServerConfig, *,
                    timeout_seconds: float | None,
                    ) -> model_server_config_pb2.ModelServerConfig:
        """Reload this process's core; returns the config it replaced."""
        try:
            return await self.core.reload(config, timeout_seconds=timeout_seconds)
        except TimeoutError:
            raise errors.ServingError(
                errors.Code.DEADLINE_EXCEEDED, "The new models did not become available before "
                "the call's deadline; the running config is kept") from None
