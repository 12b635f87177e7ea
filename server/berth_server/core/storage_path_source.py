"""Which versions of a model exist on disk, and which of them the version policy aspires to.

Pure functions over the file system: the poller calls them and hands the complete list of
aspired versions to the manager, which reconciles (TF Serving's Source → Target contract).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors

log = logging.getLogger(__name__)

_SHARD = re.compile(r"^variables\.data-(\d+)-of-(\d+)$")


@dataclasses.dataclass(frozen=True)
class AspiredVersion:
    version: int
    path: Path


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
    """True once a SavedModel is fully written: graph present, every variables shard present.

    TF Serving loads whatever it finds (issue #1086); a half-copied version is skipped here until
    a later poll sees it complete.
    """
    if not any((version_dir / name).is_file() and (version_dir / name).stat().st_size > 0
               for name in ("saved_model.pb", "saved_model.pbtxt")):
        return False
    variables = version_dir / "variables"
    if not variables.exists():
        return True
    names = set(os.listdir(variables)) if variables.is_dir() else set()
    shards = [m for m in map(_SHARD.match, names) if m]
    if "variables.index" not in names:
        return not shards
    if not shards:
        return False
    total = int(shards[0].group(2))
    return all(f"variables.data-{i:05d}-of-{total:05d}" in names for i in range(total))


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
                     now: float) -> list[AspiredVersion]:
    """The versions `model`'s policy wants served now, highest first.

    A version that is not a complete SavedModel waits for its copy to finish, but only while
    its directory keeps changing: after `settle_seconds` without a change it is handed over
    as it is, so a version that will never be one (a `model.tflite` alone, an old
    SessionBundle) fails its load as in TF Serving instead of keeping the model waiting.
    """
    on_disk = numeric_version_dirs(model.base_path)
    complete = {v: p for v, p in on_disk.items() if is_complete(p)}
    for version in sorted(on_disk.keys() - complete.keys()):
        path = on_disk[version]
        if now - last_change(path) < settle_seconds:
            log.info("Version %d of model %s is not completely written yet; waiting", version,
                     model.name)
            continue
        log.warning("Version %d of model %s is not a complete SavedModel and has not changed "
                    "for %g s; loading it as it is", version, model.name, settle_seconds)
        complete[version] = path
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        chosen = sorted(complete, reverse=True)
    elif choice == "specific":
        wanted = list(policy.specific.versions)
        for version in wanted:
            if version not in complete:
                log.warning("Version %d of model %s is not available on disk", version, model.name)
        chosen = sorted((v for v in set(wanted) if v in complete), reverse=True)
    else:
        count = max(policy.latest.num_versions, 1) if choice == "latest" else 1
        chosen = sorted(complete, reverse=True)[:count]
    return [AspiredVersion(version, complete[version]) for version in chosen]
