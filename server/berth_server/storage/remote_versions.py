"""The versions under an object-store base path, grouped from one recursive listing.

As on disk: a first path component that parses as an integer is a version (`00000123` is
123), other keys are skipped, and of two components naming one number the first in name order
wins. A version is complete when its objects make a whole SavedModel (saved_model_layout).
"""

from __future__ import annotations

import dataclasses
import logging

from berth_server.storage import saved_model_layout
from berth_server.storage.object_store import ObjectInfo
from berth_server.storage.object_uris import StoreUri

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, str], ...]


@dataclasses.dataclass(frozen=True)
class RemoteVersion:
    """One version's prefix and its objects, keys relative to that prefix."""

    version: int
    uri: StoreUri
    objects: tuple[ObjectInfo, ...]

    @property
    def fingerprint(self) -> Fingerprint:
        """Keys, sizes and ETags: changes when an object is added, removed or rewritten."""
        return tuple(sorted((o.key, o.size, o.etag) for o in self.objects))

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def is_complete(self) -> bool:
        return saved_model_layout.is_complete({o.key: o.size for o in self.objects})

    def last_change(self) -> float:
        """When its newest object was written, in `time.time()` seconds."""
        return max((o.modified_seconds for o in self.objects), default=0.0)


def group_versions(base: StoreUri, objects: list[ObjectInfo]) -> dict[int, RemoteVersion]:
    by_dir: dict[str, list[ObjectInfo]] = {}
    for info in objects:
        name, sep, rest = info.key.partition("/")
        unsafe = any(part in ("", ".", "..") for part in rest.split("/"))
        if sep and rest and name.isdigit() and not unsafe:  # no key may leave the cache
            by_dir.setdefault(name, []).append(dataclasses.replace(info, key=rest))
    found: dict[int, RemoteVersion] = {}
    for name in sorted(by_dir):
        version = int(name)
        if version in found:
            log.warning("Ignoring %s: version %d is already provided by %s", base.child(name),
                        version, found[version].uri)
            continue
        found[version] = RemoteVersion(version, base.child(name), tuple(by_dir[name]))
    return found
