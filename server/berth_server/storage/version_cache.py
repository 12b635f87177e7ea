"""Local copies of object-store versions, so a version is loaded from disk like any other.

Layout under `root` (`--model_cache_dir`): `<scheme>/<bucket>/<prefix>/<version>/` holds the
version's files, and `<version>.manifest.json` beside it the size and ETag of each file
downloaded. Each file is written to `<name>.download` and renamed when complete, and the
manifest is updated after each one, so a restart reuses every file whose size and ETag still
match the listing, even after a crash in the middle of a download.

The poller `plan`s the versions each model aspires to; `fetch` (on a load thread) makes the
local copy match its plan; `release` removes a copy once its version has ended and is no longer
planned. A server that stops keeps its plans, so its copies stay for the next start.

Thread-safety: every method may be called from any thread; one lock guards plans and stores.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from berth_server.storage import download_progress, object_uris, remote_versions
from berth_server.storage.object_store import ObjectInfo, ObjectStore
from berth_server.storage.object_uris import StoreUri
from berth_server.storage.remote_versions import RemoteVersion

log = logging.getLogger(__name__)

_PARTIAL = ".download"


class VersionCache:
    def __init__(self, root: Path, environ: Mapping[str, str], *,
                 parallel_downloads: int = 8) -> None:
        self.root = root
        self._environ = dict(environ)
        self._parallel = parallel_downloads
        self._lock = threading.Lock()
        self._stores: dict[tuple[str, str, str | None], ObjectStore] = {}
        self._plans: dict[str, dict[Path, RemoteVersion]] = {}

    def list_versions(self, base_path: str) -> dict[int, RemoteVersion]:
        """Every version under an object-store base path; ServingError when it cannot list."""
        base = object_uris.parse(base_path)
        return remote_versions.group_versions(base, self._store(base).list(base))

    def local_path(self, version: RemoteVersion) -> Path:
        uri = version.uri
        return self.root.joinpath(uri.scheme, *filter(None, [uri.account, uri.bucket]),
                                  *uri.prefix.split("/"))

    def plan(self, model: str, versions: list[RemoteVersion]) -> None:
        """The versions `model` aspires to now (an empty list: none, the model left)."""
        with self._lock:
            self._plans[model] = {self.local_path(v): v for v in versions}

    def fingerprint(self, path: Path) -> remote_versions.Fingerprint | None:
        """What the store holds for a planned version; None for a path that is not planned."""
        version = self._planned(path)
        return None if version is None else version.fingerprint

    def fetch(self, path: Path) -> None:
        """Download what `path`'s planned version lacks; nothing for a path not planned."""
        version = self._planned(path)
        if version is None:
            return
        wanted = {o.key: o for o in version.objects}
        manifest = _read_manifest(path)
        path.mkdir(parents=True, exist_ok=True)
        _remove_unwanted(path, wanted)
        missing = [o for o in version.objects if not _cached(path, o, manifest)]
        progress = download_progress.DownloadProgress(
            str(version.uri), sum(o.size for o in missing))
        store = self._store(version.uri)
        lock = threading.Lock()

        def download(info: ObjectInfo) -> None:
            dest = path / info.key
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial = dest.with_name(dest.name + _PARTIAL)
            store.download(version.uri.child(info.key), partial, progress.add)
            os.replace(partial, dest)
            with lock:
                manifest[info.key] = [info.size, info.etag]
                _write_manifest(path, manifest)

        with ThreadPoolExecutor(self._parallel, thread_name_prefix="berth-fetch") as pool:
            for done in [pool.submit(download, info) for info in missing]:
                done.result()
        with lock:
            _write_manifest(path, {k: v for k, v in manifest.items() if k in wanted})
        progress.finish(reused_files=len(wanted) - len(missing), downloaded_files=len(missing))

    def release(self, path: Path) -> None:
        """Remove the copy of a version that ended, unless a model still aspires to it."""
        if self._planned(path) is not None or not path.is_relative_to(self.root):
            return
        if path.exists():
            log.info("Removing %s from the model cache", path)
        shutil.rmtree(path, ignore_errors=True)
        _manifest_path(path).unlink(missing_ok=True)

    def _planned(self, path: Path) -> RemoteVersion | None:
        with self._lock:
            return next((p[path] for p in self._plans.values() if path in p), None)

    def _store(self, uri: StoreUri) -> ObjectStore:
        key = (uri.scheme, uri.bucket, uri.account)
        with self._lock:
            if key not in self._stores:
                self._stores[key] = ObjectStore(uri, self._environ)
            return self._stores[key]


def _cached(path: Path, info: ObjectInfo, manifest: dict[str, list[object]]) -> bool:
    file = path / info.key
    return (manifest.get(info.key) == [info.size, info.etag] and file.is_file()
            and file.stat().st_size == info.size)


def _remove_unwanted(path: Path, wanted: Mapping[str, ObjectInfo]) -> None:
    """Files the version no longer has (or a download cut short) leave the copy."""
    for file in [p for p in path.rglob("*") if p.is_file()]:
        if file.relative_to(path).as_posix() not in wanted:
            file.unlink()


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def _read_manifest(path: Path) -> dict[str, list[object]]:
    try:
        manifest: dict[str, list[object]] = json.loads(_manifest_path(path).read_text())
        return manifest
    except (OSError, ValueError):
        return {}


def _write_manifest(path: Path, manifest: dict[str, list[object]]) -> None:
    target = _manifest_path(path)
    partial = target.with_name(target.name + _PARTIAL)
    partial.write_text(json.dumps(manifest, sort_keys=True))
    os.replace(partial, target)
