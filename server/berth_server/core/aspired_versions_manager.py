"""Loads and unloads model versions so that what is served follows what is aspired.

TF Serving's AspiredVersionsManager with its AvailabilityPreservingPolicy: a source hands over
the complete list of versions it wants for a model; new versions are loaded (highest first,
one model's loads in order, different models in parallel) and un-aspired ones are unloaded
only once an aspired version is AVAILABLE, so a model never goes dark during a swap. Requests
hold a lease on the version they started on; an unloading version waits for its leases.
A failed load is retried, then ends in END with its error; unlike TF Serving (issue #1738) it
is tried again when its directory changes on disk, or, when its store was UNAVAILABLE, when a
poll lists it again.

Task-safety: every method runs on the event loop; only `load_fn` and servable `close` run on
the loader threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Generic, TypeVar

from berth_server import errors
from berth_server.core import storage_path_source
from berth_server.core.servable_state import Servable, ServableId, State, VersionStatus

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Servable)
LoadFn = Callable[[ServableId], S]
Fingerprint = Callable[[Path], object]
StateHook = Callable[[ServableId, State], None]


@dataclasses.dataclass(eq=False)
class _Harness(Generic[S]):
    """One attempt to serve one version: its state, servable and in-flight leases."""

    id: ServableId
    state: State = State.START
    error: errors.ServingError | None = None
    servable: S | None = None
    fingerprint: object = None
    leases: int = 0
    drained: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class Lease(Generic[S]):
    """A loaded version held for the duration of one request: held once made, released when
    its `with` block ends (a class, not a generator: it is on every request's path)."""

    __slots__ = ("_harness", "name", "version", "servable")

    def __init__(self, harness: _Harness[S], servable: S) -> None:
        self._harness = harness
        self.name = harness.id.name
        self.version = harness.id.version
        self.servable = servable
        harness.leases += 1
        harness.drained.clear()

    def __enter__(self) -> Lease[S]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._harness.leases -= 1
        if self._harness.leases == 0:
            self._harness.drained.set()


@dataclasses.dataclass
class _Model(Generic[S]):
    versions: dict[int, _Harness[S]] = dataclasses.field(default_factory=dict)
    aspired: dict[int, Path] = dataclasses.field(default_factory=dict)
    loader: asyncio.Task[None] | None = None


class AspiredVersionsManager(Generic[S]):
    def __init__(self, load_fn: LoadFn[S], executor: Executor, *, max_load_retries: int,
                 load_retry_interval_seconds: float,
                 fingerprint: Fingerprint = storage_path_source.fingerprint,
                 on_change: StateHook | None = None) -> None:
        self._load_fn = load_fn
        self._executor = executor
        self._max_load_retries = max(0, max_load_retries)
        self._retry_interval_seconds = max(0.0, load_retry_interval_seconds)
        self._fingerprint = fingerprint
        self._on_change = on_change
        self._models: dict[str, _Model[S]] = {}
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- source side ------------------------------------------------------------------------

    def set_aspired_versions(self, name: str, aspired: dict[int, Path]) -> None:
        """Replace the versions aspired for `name` (an empty dict un-aspires all of them)."""
        model = self._models.setdefault(name, _Model())
        model.aspired = dict(aspired)
        for version, path in aspired.items():
            harness = model.versions.get(version)
            if harness is None or harness.state != State.END:
                continue
            if harness.error is None or harness.error.code == errors.Code.CANCELLED:
                log.info("Version %d of %s is aspired again; loading it", version, name)
                del model.versions[version]  # unloaded earlier, not failed: load it afresh
            elif self._fingerprint(path) != harness.fingerprint:
                log.info("Version %d of %s changed on disk; loading it again", version, name)
                del model.versions[version]
            elif harness.error.code == errors.Code.UNAVAILABLE:
                log.info("Version %d of %s failed while its store was unavailable; loading it "
                         "again", version, name)
                del model.versions[version]
        self._reconcile(name)

    def forget_model(self, name: str) -> None:
        """Un-aspire every version of a model that left the config."""
        if name in self._models:
            self.set_aspired_versions(name, {})

    # -- request side -----------------------------------------------------------------------

    def available_versions(self, name: str) -> list[int]:
        model = self._models.get(name)
        if model is None:
            return []
        return sorted(v for v, h in model.versions.items() if h.state == State.AVAILABLE)

    def lease(self, name: str, version: int | None = None) -> Lease[S]:
        """Hold a version (the latest AVAILABLE one when `version` is None) for one request;
        use it as `with manager.lease(...) as lease:`."""
        harness = self._find(name, version)
        assert harness.servable is not None  # AVAILABLE harnesses hold their servable
        return Lease(harness, harness.servable)

    def _find(self, name: str, version: int | None) -> _Harness[S]:
        model = self._models.get(name)
        if model is not None:
            if version is None:
                ready = self.available_versions(name)
                if ready:
                    return model.versions[ready[-1]]
            else:
                harness = model.versions.get(version)
                if harness is not None and harness.state == State.AVAILABLE:
                    return harness
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise errors.not_found(f"Servable not found for request: {request}")

    def statuses(self, name: str) -> list[VersionStatus]:
        """Every version ever tracked for `name` (END included), by version."""
        model = self._models.get(name)
        if model is None:
            return []
        return [VersionStatus(v, h.state, h.error) for v, h in sorted(model.versions.items())]

    # -- waiting ----------------------------------------------------------------------------

    async def wait_settled(self, names: list[str], *, every_version: bool = False,
                           ) -> dict[str, errors.ServingError]:
        """Wait until each model has an AVAILABLE version or all its aspired loads ended.

        With `every_version`, wait for every aspired version to be AVAILABLE or END (labels
        given at startup may name a lower version than the first one to load).

        Returns the models that did not become available, with their last load error.
        """
        async with self._changed:
            await self._changed.wait_for(
                lambda: all(self._settled(n, every_version) for n in names))
        failed = {}
        for name in names:
            if not self.available_versions(name):
                model = self._models[name]
                error = next((h.error for h in model.versions.values() if h.error), None)
                failed[name] = error or errors.ServingError(errors.Code.UNKNOWN, "not loaded")
        return failed

    def _settled(self, name: str, every_version: bool = False) -> bool:
        model = self._models.get(name)
        if model is None or not model.aspired:
            return False
        if self.available_versions(name) and not every_version:
            return True
        done = (State.AVAILABLE, State.END) if every_version else (State.END,)
        return all(model.versions.get(v) is not None and model.versions[v].state in done
                   for v in model.aspired)

    async def _notify(self, harness: _Harness[S], state: State) -> None:
        harness.state = state
        if self._on_change is not None:
            self._on_change(harness.id, state)
        async with self._changed:
            self._changed.notify_all()

    # -- reconciling ------------------------------------------------------------------------

    def _reconcile(self, name: str) -> None:
        model = self._models[name]
        if self._pending_loads(model) and (model.loader is None or model.loader.done()):
            model.loader = self._spawn(self._load_pending(name))
        aspired_ready = any(model.versions.get(v) is not None
                            and model.versions[v].state == State.AVAILABLE for v in model.aspired)
        if aspired_ready or not model.aspired:
            for version, harness in sorted(model.versions.items()):
                if version not in model.aspired and harness.state == State.AVAILABLE:
                    harness.state = State.UNLOADING
                    self._spawn(self._unload(harness))

    def _pending_loads(self, model: _Model[S]) -> list[int]:
        return sorted((v for v in model.aspired if v not in model.versions), reverse=True)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _load_pending(self, name: str) -> None:
        model = self._models[name]
        while pending := self._pending_loads(model):
            version = pending[0]
            harness: _Harness[S] = _Harness(ServableId(name, version,
                                                       model.aspired[version]))
            model.versions[version] = harness
            await self._notify(harness, State.START)
            await self._load(harness, model)
            self._reconcile(name)

    async def _load(self, harness: _Harness[S], model: _Model[S]) -> None:
        loop = asyncio.get_running_loop()
        harness.fingerprint = self._fingerprint(harness.id.path)
        await self._notify(harness, State.LOADING)
        for attempt in range(self._max_load_retries + 1):
            if harness.id.version not in model.aspired:
                harness.error = errors.ServingError(errors.Code.CANCELLED,
                                                    "Version was un-aspired while loading")
                break
            log.info("Loading servable version {name: %s version: %d}", harness.id.name,
                     harness.id.version)
            loading = loop.run_in_executor(self._executor, self._load_fn, harness.id)
            try:
                harness.servable = await asyncio.shield(loading)
            except asyncio.CancelledError:  # close(): the thread cannot be stopped
                loading.add_done_callback(_close_when_loaded)
                harness.error = errors.ServingError(errors.Code.CANCELLED,
                                                    "The server stopped while loading")
                await self._notify(harness, State.END)
                raise
            except Exception as error:  # a load error of any kind ends in the status
                harness.error = _as_serving_error(error)
                log.error("Loading servable %s version %d failed (attempt %d): %s",
                          harness.id.name, harness.id.version, attempt + 1, harness.error.message)
                if attempt < self._max_load_retries:
                    await asyncio.sleep(self._retry_interval_seconds)
                continue
            harness.error = None
            log.info("Successfully loaded servable version {name: %s version: %d}",
                     harness.id.name, harness.id.version)
            await self._notify(harness, State.AVAILABLE)
            return
        await self._notify(harness, State.END)

    async def _unload(self, harness: _Harness[S]) -> None:
        await self._notify(harness, State.UNLOADING)
        if harness.leases:
            await harness.drained.wait()
        servable, harness.servable = harness.servable, None
        if servable is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, servable.close)
        log.info("Unloaded servable version {name: %s version: %d}",
                 harness.id.name, harness.id.version)
        await self._notify(harness, State.END)
        model = self._models.get(harness.id.name)
        if (model is not None and harness.id.version in model.aspired
                and model.versions.get(harness.id.version) is harness):
            del model.versions[harness.id.version]  # aspired again while it unloaded
            self._reconcile(harness.id.name)

    async def close(self) -> None:
        """Stop loading and unload everything, letting in-flight requests finish (shutdown)."""
        unloads = []
        for model in self._models.values():
            model.aspired = {}
            if model.loader is not None:
                model.loader.cancel()
            for harness in model.versions.values():
                if harness.state == State.AVAILABLE:
                    harness.state = State.UNLOADING
                    unloads.append(self._unload(harness))
        # Unloads already under way (waiting for their leases) and cancelled loads finish too.
        await asyncio.gather(*unloads, *self._tasks, return_exceptions=True)


def _close_when_loaded(loading: asyncio.Future[S]) -> None:
    """Close a servable whose load finished after nobody wanted it any more."""
    if not loading.cancelled() and loading.exception() is None:
        loading.result().close()


def _as_serving_error(error: Exception) -> errors.ServingError:
    if isinstance(error, errors.ServingError):
        return error
    code = getattr(error, "error_code", errors.Code.UNKNOWN)
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    try:
        return errors.ServingError(errors.Code(code), message)
    except (ValueError, TypeError):
        return errors.ServingError(errors.Code.UNKNOWN, message)
