"""The manager's side of object-store versions: fetched before their load, fingerprinted by
their listing, and removed from the cache once they have ended and are no longer aspired.

Local versions pass through unchanged: the cache knows only the paths it planned.
"""

from __future__ import annotations

from pathlib import Path

from berth_server.core import storage_path_source
from berth_server.core.aspired_versions_manager import Fingerprint, LoadFn, S, StateHook
from berth_server.core.servable_state import ServableId, State
from berth_server.storage.version_cache import VersionCache


def fetching(cache: VersionCache, load_fn: LoadFn[S]) -> LoadFn[S]:
    """`load_fn`, after the version's local copy is complete (a store error fails the load)."""

    def load(servable_id: ServableId) -> S:
        cache.fetch(servable_id.path)
        return load_fn(servable_id)

    return load


def fingerprint(cache: VersionCache) -> Fingerprint:
    """A planned version's listing (its copy may not exist yet), else the files on disk."""

    def of(path: Path) -> object:
        listed = cache.fingerprint(path)
        return storage_path_source.fingerprint(path) if listed is None else listed

    return of


def releasing(cache: VersionCache, hook: StateHook | None = None) -> StateHook:
    """`hook`, and an ended version's copy leaves the cache unless it is aspired again."""

    def on_change(servable_id: ServableId, state: State) -> None:
        if hook is not None:
            hook(servable_id, state)
        if state == State.END:
            cache.release(servable_id.path)

    return on_change
