"""The serving configuration at run time: which models, their version policies and labels.

Polls every model's base path and feeds the aspired versions to the manager; applies a new
model_config_list (from the config file or HandleReloadConfigRequest) as TF Serving's ServerCore
does: models left out are unloaded, new ones loaded, and the call returns once the new models
are AVAILABLE or have failed. Reloads are serialized.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors
from berth_server.config import model_config
from berth_server.core import storage_path_source
from berth_server.core.aspired_versions_manager import AspiredVersionsManager
from berth_server.storage import object_uris
from berth_server.storage.version_cache import VersionCache

log = logging.getLogger(__name__)


class ServerCore:
    def __init__(self, manager: AspiredVersionsManager, *, file_system_poll_wait_seconds: float,
                 allow_version_labels_for_unavailable_models: bool,
                 incomplete_version_wait_seconds: float = 60.0,
                 cache: VersionCache | None = None) -> None:
        self.manager = manager
        self._cache = cache  # local copies of object-store versions; None: local paths only
        self._poll_seconds = file_system_poll_wait_seconds
        self._settle_seconds = incomplete_version_wait_seconds
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._models: dict[str, model_server_config_pb2.ModelConfig] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._reload_lock = asyncio.Lock()
        self._configured = False

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def has_model(self, name: str) -> bool:
        """Whether `name` is in the running config (cheap: called once per request)."""
        return name in self._models

    def labels(self, name: str) -> Mapping[str, int]:
        return self._labels.get(name, {})

    def resolve_version(self, name: str, version: int | None, label: str | None) -> int | None:
        """The version a ModelSpec asks for (None: the latest); labels go through the map."""
        if label is None:
            return version
        resolved = self._labels.get(name, {}).get(label)
        if resolved is None:
            raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
        return resolved

    def config(self) -> model_server_config_pb2.ModelServerConfig:
        """The running model list, as a config that `reload` takes."""
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.extend(self._models.values())
        return config

    async def reload(self, config: model_server_config_pb2.ModelServerConfig, *,
                     timeout_seconds: float | None = None,
                     ) -> model_server_config_pb2.ModelServerConfig:
        """Replace the running model list and return the one it replaced, or keep it and raise
        ServingError.

        The first config (startup) is applied as it comes and waited for. A later one is
        applied only if it loads: its new models are added beside the running ones, and
        models that left it are unloaded only once every new model is AVAILABLE. A new model
        that fails (its base path cannot be listed, its load ends in END) or is not AVAILABLE
        within `timeout_seconds` (the caller's deadline) is taken back out, and the running
        config stays as it was.
        """
        async with asyncio.timeout(timeout_seconds), self._reload_lock:
            models = {m.name: m for m in model_config.validate(config)}
            previous = self.config()
            if not self._configured:
                await self._apply_first(models)
                return previous
            self._check_labels(models)
            running = self._models
            new_names = [name for name in models if name not in running]
            # Models already running take their new config (policy, base path) at once, as in
            # TF Serving; the manager keeps their versions available through the change.
            self._models = {**running, **models}
            try:
                failed = await self._load_new(new_names)
            except BaseException:  # the deadline passed, or the caller went away
                self._take_back(new_names, running)
                raise
            if failed:
                self._take_back(new_names, running)
                await self.poll_once()  # models already running get their old config back
                details = ", ".join(f"{{{n}: {e.message}}}" for n, e in sorted(failed.items()))
                raise errors.ServingError(
                    errors.Code.UNKNOWN, f"{len(failed)} model(s) did not become available: "
                                         f"{details}")
            for name in running.keys() - models.keys():
                log.info("Model %s left the config; unloading it", name)
                self._forget(name)
            self._models = dict(models)
            self._apply_labels(models)
            return previous

    async def _apply_first(self, models: dict[str, model_server_config_pb2.ModelConfig]) -> None:
        self._models = dict(models)
        self._configured = True
        unlisted = await self.poll_once()
        # A store that refuses (credentials, no such bucket) fails startup with its words; one
        # that does not answer is waited for, polled like a base path not there yet.
        refused = {n: e for n, e in unlisted.items()
                   if object_uris.is_remote(models[n].base_path)
                   and e.code != errors.Code.UNAVAILABLE}
        if refused:
            details = ", ".join(f"{{{n}: {e.message}}}" for n, e in sorted(refused.items()))
            raise errors.ServingError(
                errors.Code.UNKNOWN, f"{len(refused)} model(s) did not become available: "
                                     f"{details}")
        labelled = any(m.version_labels for m in models.values())
        failed = await self.manager.wait_settled(list(models), every_version=labelled)
        if failed:
            details = ", ".join(f"{{{n}: {e.message}}}" for n, e in sorted(failed.items()))
            raise errors.ServingError(
                errors.Code.UNKNOWN, f"{len(failed)} model(s) did not become available: "
                                     f"{details}")
        self._check_labels(models)
        self._apply_labels(models)

    async def _load_new(self, names: list[str]) -> dict[str, errors.ServingError]:
        """Poll, then wait for the new models; those whose base path fails to list fail now."""
        unlisted = await self.poll_once()
        failed = {name: unlisted[name] for name in names if name in unlisted}
        waiting = [name for name in names if name not in failed]
        failed.update(await self.manager.wait_settled(waiting) if waiting else {})
        return failed

    def _take_back(self, new_names: list[str],
                   running: dict[str, model_server_config_pb2.ModelConfig]) -> None:
        for name in new_names:
            self._forget(name)
        self._models = running

    def _forget(self, name: str) -> None:
        if self._cache is not None:
            self._cache.plan(name, [])
        self.manager.forget_model(name)

    def _check_labels(self, models: Mapping[str, model_server_config_pb2.ModelConfig]) -> None:
        for name, model in models.items():
            available = set(self.manager.available_versions(name))
            current = self._labels.get(name, {})
            for label, version in model.version_labels.items():
                if version in available:
                    continue
                unchanged_or_new = current.get(label, version) == version
                if self._allow_unavailable_labels and unchanged_or_new:
                    continue
                raise errors.failed_precondition(
                    f"Request to assign label to version {version} of model {name}, which is not "
                    "currently available for inference")

    def _apply_labels(self, models: Mapping[str, model_server_config_pb2.ModelConfig]) -> None:
        self._labels = {name: dict(m.version_labels) for name, m in models.items()}

    async def poll_once(self) -> dict[str, errors.ServingError]:
        """List every model's versions (off the loop) and hand them to the manager; returns
        the models whose base path could not be listed."""
        models: list[model_server_config_pb2.ModelConfig] = list(self._models.values())
        found = await asyncio.get_running_loop().run_in_executor(
            None, _scan, models, self._settle_seconds, self._cache)
        unlisted: dict[str, errors.ServingError] = {}
        for model in models:
            still_configured = self._models.get(model.name) is model
            if not still_configured:
                continue  # replaced by a reload while scanning
            aspired = found[model.name]
            if isinstance(aspired, errors.ServingError):
                log.error("%s", aspired.message)
                unlisted[model.name] = aspired
                continue
            if not aspired:
                log.warning("No versions of servable %s found under base path %s", model.name,
                            model.base_path)
            if self._cache is not None:  # planned before aspired: a load fetches its plan
                self._cache.plan(model.name, [a.remote for a in aspired if a.remote])
            self.manager.set_aspired_versions(model.name, {a.version: a.path for a in aspired})
        return unlisted

    async def poll_forever(self) -> None:
        """Re-scan base paths every file_system_poll_wait_seconds (never when it is <= 0)."""
        if self._poll_seconds <= 0:
            return
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.poll_once()
            except Exception:  # a poll must never stop polling
                log.exception("File system poll failed")

    def is_ready(self) -> bool:
        """Every configured model has an AVAILABLE version."""
        return all(self.manager.available_versions(name) for name in self._models)


def _scan(models: list[model_server_config_pb2.ModelConfig], settle_seconds: float,
          cache: VersionCache | None,
          ) -> dict[str, list[storage_path_source.AspiredVersion] | errors.ServingError]:
    result: dict[str, list[storage_path_source.AspiredVersion] | errors.ServingError] = {}
    now = time.time()
    for model in models:
        try:
            result[model.name] = storage_path_source.aspired_versions(
                model, settle_seconds=settle_seconds, now=now, cache=cache)
        except errors.ServingError as error:
            result[model.name] = error
        except OSError as error:
            result[model.name] = errors.ServingError(
                errors.Code.PERMISSION_DENIED if isinstance(error, PermissionError)
                else errors.Code.UNKNOWN, f"Could not list {model.base_path}: {error}")
    return result
