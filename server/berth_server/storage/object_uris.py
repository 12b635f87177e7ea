"""Object-store base paths: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.

`abfs://container@account.dfs.core.windows.net/prefix` (Hadoop's Azure form) names the same
container as `az://container/prefix` with the account written in the URI.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from berth_server import errors

Scheme = Literal["s3", "gs", "az"]
_SCHEMES: dict[str, Scheme] = {"s3": "s3", "s3a": "s3", "gs": "gs", "az": "az", "abfs": "az",
                               "abfss": "az"}


@dataclasses.dataclass(frozen=True)
class StoreUri:
    """A bucket (or Azure container) and a key prefix inside it, without slashes at its ends."""

    scheme: Scheme
    bucket: str
    prefix: str = ""
    account: str | None = None  # Azure only: the storage account named in an abfs:// URI

    def child(self, name: str) -> StoreUri:
        return dataclasses.replace(self, prefix=f"{self.prefix}/{name}".strip("/"))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")


def is_remote(base_path: str) -> bool:
    """Whether a base path names an object store rather than a local directory."""
    scheme, sep, _ = base_path.partition("://")
    return bool(sep) and scheme.lower() in _SCHEMES


def parse(base_path: str) -> StoreUri:
    """The bucket and prefix of an object-store URI; INVALID_ARGUMENT when it names none."""
    scheme, _, rest = base_path.partition("://")
    kind = _SCHEMES.get(scheme.lower())
    bucket, _, prefix = rest.partition("/")
    account = None
    if kind == "az" and "@" in bucket:
        bucket, _, host = bucket.partition("@")
        account = host.split(".", 1)[0] or None
    if kind is None or not bucket:
        raise errors.invalid_argument(
            f"Base path {base_path} is not an object-store URI (s3://, gs:// or az://bucket/path)")
    return StoreUri(kind, bucket, prefix.strip("/"), account)
