"""The whole server's answers when it runs as several worker processes (`--num_workers`).

Every worker holds every model, so whichever worker the kernel hands a connection serves its
requests. Model status, readiness, metrics and reloads describe the whole server, so the worker
a client reached asks its peers (`peers`) and answers for all of them:

* Status: per version, the state every worker has reached (`model_status.combined`), so a
  version is AVAILABLE only once it is AVAILABLE in every worker.
* Readiness: ready only when every worker is; a worker that does not answer is not ready.
* Metrics: every worker's samples added up (`observability.merge`). A worker that does not
  answer fails the scrape (UNAVAILABLE) rather than let its counters seem to drop.
* Reloads: worker 0 applies each one to every worker, one at a time (reloads from two clients
  reaching two workers would otherwise be applied in different orders). If a worker refuses
  it, those that took it get their previous config back and the caller gets the refusal: all
  workers keep one config. While the call runs the workers differ, as they load at their own
  pace: a new model answers from the workers that have it and NOT_FOUND from the others, so a
  client waits for the call's answer, as it does with one process, where a model answers once
  it is AVAILABLE. A version that appears on disk, and a `--model_config_file` that changes,
  are picked up by each worker's own poll: for a poll interval and a load, requests for the
  latest version may get the new one or the old one depending on the worker, while status
  says LOADING until every worker has it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterable
from typing import Any, TypeAlias

from prometheus_client.metrics_core import Metric
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors
from berth_server.core import model_status
from berth_server.core.servable_state import State, VersionStatus
from berth_server.observability import merge
from berth_server.service import peers
from berth_server.service.server_view import LocalView, Readiness
from berth_server.worker_link import WorkerIdentity

log = logging.getLogger(__name__)

COORDINATOR = 0
_READ_TIMEOUT_SECONDS = 10.0
_RELOAD_MARGIN_SECONDS = 5.0  # a worker's own reload deadline fires first, with its message
ServerConfig: TypeAlias = model_server_config_pb2.ModelServerConfig


class WorkerView:
    def __init__(self, local: LocalView, identity: WorkerIdentity) -> None:
        self._local = local
        self.identity = identity
        self._reload_lock = asyncio.Lock()  # used by the coordinator only

    # -- what a client asks -----------------------------------------------------------------

    async def status(self, name: str, version: int | None,
                     ) -> get_model_status_pb2.GetModelStatusResponse:
        answers = await self._ask_peers({"op": "rows", "model": name})
        rows = [self._local.rows(name)] + [[_row(*wire) for wire in a["rows"]] for a in answers]
        return model_status.model_status(model_status.combined(rows), name, version)

    async def readiness(self) -> Readiness:
        own = self._local.own_readiness()
        try:
            answers = await self._ask_peers({"op": "readiness"})
        except errors.ServingError:
            return Readiness(False, own.available)
        available = {name: sorted(set(versions).intersection(
            *(answer["available"].get(name, []) for answer in answers)))
            for name, versions in own.available.items()}
        return Readiness(own.ready and all(a["ready"] for a in answers), available)

    async def metric_families(self) -> Iterable[Metric]:
        answers = await self._ask_peers({"op": "metrics"})
        own = merge.to_wire(await self._local.metric_families())
        return merge.merge([own, *(answer["families"] for answer in answers)])

    async def reload(self, config: ServerConfig, *, timeout_seconds: float | None) -> None:
        if self.identity.index != COORDINATOR:
            log.info("Passing a config reload to worker %d, which applies it to every worker",
                     COORDINATOR)
            answer = await self._call(COORDINATOR, {
                "op": "reload", "config": _encode(config), "timeout": timeout_seconds},
                timeout_seconds=_reload_call_timeout(timeout_seconds))
            _raise_refusal(answer)
            return
        # Shielded: a caller whose deadline passed must not stop the workers being put back.
        applying = asyncio.ensure_future(self._apply_everywhere(config, timeout_seconds))
        applying.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(applying)

    # -- what a peer asks -------------------------------------------------------------------

    async def answer(self, request: peers.Message) -> peers.Message:
        """Answer a peer's call (`peers.serve`) from this worker alone."""
        op = request["op"]
        if op == "rows":
            return {"rows": [_wire_row(row) for row in self._local.rows(request["model"])]}
        if op == "readiness":
            own = self._local.own_readiness()
            return {"ready": own.ready, "available": own.available}
        if op == "metrics":
            return {"families": merge.to_wire(await self._local.metric_families())}
        config, timeout = _decode(request["config"]), request["timeout"]
        try:
            if op == "apply":
                previous = await self._local.apply(config, timeout_seconds=timeout)
                return {"previous": _encode(previous)}
            if op == "reload":
                await self.reload(config, timeout_seconds=timeout)
                return {}
        except errors.ServingError as error:
            return {"error": [int(error.code), error.message]}
        raise ValueError(f"unknown call {op!r}")

    # -- the coordinator's reload -----------------------------------------------------------

    async def _apply_everywhere(self, config: ServerConfig, timeout_seconds: float | None,
                                ) -> None:
        async with self._reload_lock:
            log.info("Applying a config reload to all %d workers", self.identity.count)
            outcomes = await asyncio.gather(*(self._apply_on(index, config, timeout_seconds)
                                              for index in range(self.identity.count)))
            refusals = [o for o in outcomes if isinstance(o, errors.ServingError)]
            if not refusals:
                return
            took = {i: o for i, o in enumerate(outcomes) if not isinstance(o, errors.ServingError)}
            if took:
                log.warning("Worker(s) %s refused the new config; giving workers %s their "
                            "previous one", [i for i in range(len(outcomes)) if i not in took],
                            sorted(took))
            for index, undone in zip(took, await asyncio.gather(
                    *(self._apply_on(i, previous, None) for i, previous in took.items())),
                    strict=True):
                if isinstance(undone, errors.ServingError):
                    log.error("Worker %d could not get its previous config back: %s", index,
                              undone.message)
            raise refusals[0]

    async def _apply_on(self, index: int, config: ServerConfig, timeout_seconds: float | None,
                        ) -> ServerConfig | errors.ServingError:
        """The config worker `index` replaced, or its refusal."""
        try:
            if index == self.identity.index:
                return await self._local.apply(config, timeout_seconds=timeout_seconds)
            answer = await self._call(index, {
                "op": "apply", "config": _encode(config), "timeout": timeout_seconds},
                timeout_seconds=_reload_call_timeout(timeout_seconds))
            _raise_refusal(answer)
            return _decode(answer["previous"])
        except errors.ServingError as error:
            return error

    # -- calls ------------------------------------------------------------------------------

    async def _ask_peers(self, request: peers.Message) -> list[peers.Message]:
        others = [i for i in range(self.identity.count) if i != self.identity.index]
        return list(await asyncio.gather(*(
            self._call(index, request, timeout_seconds=_READ_TIMEOUT_SECONDS)
            for index in others)))

    async def _call(self, index: int, request: peers.Message, *,
                    timeout_seconds: float | None) -> peers.Message:
        try:
            return await peers.call(self.identity.peer_socket(index), request,
                                    timeout_seconds=timeout_seconds)
        except peers.Unreachable as error:
            raise errors.ServingError(errors.Code.UNAVAILABLE,
                                      f"Worker {index} did not answer: {error}") from None


def _reload_call_timeout(timeout_seconds: float | None) -> float | None:
    return None if timeout_seconds is None else timeout_seconds + _RELOAD_MARGIN_SECONDS


def _raise_refusal(answer: peers.Message) -> None:
    if "error" in answer:
        code, message = answer["error"]
        raise errors.ServingError(errors.Code(code), message)


def _encode(config: ServerConfig) -> str:
    return base64.b64encode(config.SerializeToString()).decode()


def _decode(text: str) -> ServerConfig:
    return ServerConfig.FromString(base64.b64decode(text))


def _wire_row(row: VersionStatus) -> list[Any]:
    error = row.error
    return [row.version, int(row.state), None if error is None else [int(error.code),
                                                                     error.message]]


def _row(version: int, state: int, error: list[Any] | None) -> VersionStatus:
    return VersionStatus(version, State(state), None if error is None
                         else errors.ServingError(errors.Code(error[0]), error[1]))
