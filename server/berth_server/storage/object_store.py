"""Listing and downloading objects of one bucket, with the store's errors as ServingErrors.

A store's failure keeps its own words (`AccessDenied: Access Denied`, `NoSuchBucket: ...`,
`error sending request`) and gets a canonical code from its HTTP status: 401
UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 5xx and no answer UNAVAILABLE.

Thread-safety: obstore clients are; one ObjectStore serves the poller and the load threads.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

from berth_server import errors
from berth_server.storage import store_config
from berth_server.storage.object_uris import StoreUri

CHUNK_BYTES = 2**20
_STATUS = re.compile(r"status code: (\d{3})")
_XML_ERROR = re.compile(r"<Code>([^<]*)</Code>\s*<Message>\s*([^<]*)</Message>")
_JSON_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]*)"')
_CODES = {401: errors.Code.UNAUTHENTICATED, 403: errors.Code.PERMISSION_DENIED,
          404: errors.Code.NOT_FOUND}


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One object: its key relative to the listed prefix, size, ETag (or generation), mtime."""

    key: str
    size: int
    etag: str
    modified_seconds: float


class ObjectStore:
    def __init__(self, uri: StoreUri, environ: Mapping[str, str]) -> None:
        self._store = store_config.open_store(uri, environ)

    def list(self, prefix: StoreUri) -> list[ObjectInfo]:
        """Every object under `prefix` (recursively), keys relative to it."""
        root = f"{prefix.prefix}/" if prefix.prefix else ""
        try:
            listed = [meta for batch in obstore.list(self._store, prefix=root or None)
                      for meta in batch]
        except (BaseError, OSError) as error:
            raise store_error(f"Could not list {prefix}", error) from None
        return [ObjectInfo(meta["path"].removeprefix(root), meta["size"],
                           meta.get("e_tag") or meta.get("version") or "",
                           meta["last_modified"].timestamp())
                for meta in listed if not meta["path"].endswith("/")]

    def download(self, uri: StoreUri, dest: Path, on_bytes: Callable[[int], None]) -> None:
        """Stream object `uri` into `dest` (created or truncated), reporting bytes as they come."""
        try:
            with open(dest, "wb") as file:
                for chunk in obstore.get(self._store, uri.prefix).stream(
                        min_chunk_size=CHUNK_BYTES):
                    file.write(chunk)
                    on_bytes(len(chunk))
                file.flush()
                os.fsync(file.fileno())
        except (BaseError, OSError) as error:
            raise store_error(f"Could not download {uri}", error) from None


def store_error(doing: str, error: Exception) -> errors.ServingError:
    """`doing: <the store's message>` with the code its HTTP status implies."""
    text = str(error).split("\n\nDebug source:", 1)[0]
    detail = _XML_ERROR.search(text)
    message = f"{detail.group(1)}: {detail.group(2).splitlines()[0]}" if detail else text
    if not detail and (json_detail := _JSON_MESSAGE.search(text)):
        message = json_detail.group(1)
    return errors.ServingError(_code(text, error), f"{doing}: {message}")


def _code(text: str, error: Exception) -> errors.Code:
    if isinstance(error, PermissionError | PermissionDeniedError):
        return errors.Code.PERMISSION_DENIED
    if isinstance(error, UnauthenticatedError):
        return errors.Code.UNAUTHENTICATED
    if status := _STATUS.search(text):
        number = int(status.group(1))
        return _CODES.get(number, errors.Code.UNAVAILABLE if number >= 500 else errors.Code.UNKNOWN)
    if isinstance(error, NotFoundError | FileNotFoundError):
        return errors.Code.NOT_FOUND
    if "error sending request" in text or "timed out" in text.lower():
        return errors.Code.UNAVAILABLE
    return errors.Code.UNKNOWN
