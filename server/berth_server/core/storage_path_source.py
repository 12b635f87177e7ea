"""Which versions of a model exist, and which of them the version policy aspires to.

Pure functions over the file system, or over one listing of an object-store base path (s3://,
gs://, az://) whose versions are then loaded from their local copies in the version cache: the
poller calls them and hands the complete list of aspired versions to the manager, which
reconciles (TF Serving's Source → Target contract).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors
from berth_server.storage import object_uris, saved_model_layout
from berth_server.storage.remote_versions import RemoteVersion
from berth_server.storage.version_cache import VersionCache

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AspiredVersion:
    version: int
    path: Path
    remote: RemoteVersion | None = None  # what the local copy at `path` is fetched from


def numeric_version_dirs(base_path: str) -> dict[int, Path]:
    """Child dirs whose names parse as integers (`00000123` is 123); others are skipped."""
    if not os.path.isdir(base_path):
        raise errors.invalid_argument(f"Could not find base path {base_path} for servable")
    found: dict[int, Path] = {}
    with os.scandir(base_path) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.isdigit() or not entry.is_dir():
                continue
            version = int(entry.name)
            if version in found:
                log.warning("Ignoring %s: version %d is already provided by %s",
                            entry.path, version, found[version])
                continue
            found[version] = Path(entry.path)
    return found


def is_complete(version_dir: Path) -> bool:
    """True once a version is fully written (`saved_model_layout`)."""
    sizes: dict[str, int] = {}
    for name in (*saved_model_layout.GRAPH_FILES, saved_model_layout.TFLITE_FILE):
        if (version_dir / name).is_file():
            sizes[name] = (version_dir / name).stat().st_size
    variables = version_dir / "variables"
    if variables.is_dir():
        sizes.update({f"variables/{name}": 1 for name in os.listdir(variables)})
    return saved_model_layout.is_complete(sizes)


def last_change(version_dir: Path) -> float:
    """When anything under a version dir was last created or written (ctime: copy tools
    preserve mtimes, not ctimes), in `time.time()` seconds."""
    newest = version_dir.stat().st_ctime
    for root, dirs, files in os.walk(version_dir):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_ctime)
            except OSError:
                continue
    return newest


def fingerprint(version_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes under a version dir: changes when its files are rewritten."""
    entries = []
    for root, _, files in os.walk(version_dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            entries.append((os.path.relpath(path, version_dir), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def aspired_versions(model: model_server_config_pb2.ModelConfig, *, settle_seconds: float,
                     now: float, cache: VersionCache | None = None) -> list[AspiredVersion]:
    """The versions `model`'s policy wants served now, highest first.

    A version that is not complete (`saved_model_layout`) waits for its copy (or upload) to
    finish, but only while it keeps changing: after `settle_seconds` without a change it is
    handed over as it is, so a version that will never be one (an old SessionBundle) fails its
    load as in TF Serving instead of keeping the model waiting.
    """
    if object_uris.is_remote(model.base_path):
        if cache is None:
            raise errors.invalid_argument(f"No model cache for base path {model.base_path}")
        found = {v: _Found(r.is_complete(), r.last_change(), cache.local_path(r), r)
                 for v, r in cache.list_versions(model.base_path).items()}
    else:
        found = {v: _Found(is_complete(p), None, p, None)
                 for v, p in numeric_version_dirs(model.base_path).items()}
    complete = {v: f for v, f in found.items() if f.complete}
    for version in sorted(found.keys() - complete.keys()):
        entry = found[version]
        changed = entry.changed if entry.changed is not None else last_change(entry.path)
        if now - changed < settle_seconds:
            log.info("Version %d of model %s is not completely written yet; waiting", version,
                     model.name)
            continue
        log.warning("Version %d of model %s is not a complete SavedModel and has not changed "
                    "for %g s; loading it as it is", version, model.name, settle_seconds)
        complete[version] = entry
    return [AspiredVersion(v, complete[v].path, complete[v].remote)
            for v in _chosen(model, set(complete))]


@dataclasses.dataclass(frozen=True)
class _Found:
    complete: bool
    changed: float | None  # None: ask the file system when it is needed
    path: Path
    remote: RemoteVersion | None


def _chosen(model: model_server_config_pb2.ModelConfig, complete: set[int]) -> list[int]:
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return sorted(complete, reverse=True)
    if choice == "specific":
        wanted = list(policy.specific.versions)
        for version in wanted:
            if version not in complete:
                log.warning("Version %d of model %s is not available on disk", version, model.name)
        return sorted((v for v in set(wanted) if v in complete), reverse=True)
    count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
    return sorted(complete, reverse=True)[:count]
