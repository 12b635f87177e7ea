"""Opens an obstore client for a bucket from the environment conventions users already have.

S3: the AWS SDK's variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` for IRSA) are
read by obstore itself; TF's S3 file system's `S3_ENDPOINT`, `S3_USE_HTTPS` and `S3_VERIFY_SSL`
are mapped here, as TF Serving users set them. GCS: `GOOGLE_APPLICATION_CREDENTIALS` or the
metadata server (workload identity); `STORAGE_EMULATOR_HOST` points at an emulator. Azure:
`AZURE_STORAGE_CONNECTION_STRING`, or account name and key (`AZURE_STORAGE_ACCOUNT_NAME` /
`AZURE_STORAGE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_KEY` / `AZURE_STORAGE_KEY`), or workload
identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`).

Requests fail fast (a short connect timeout, two retries): an unreachable store is an error
for this poll or load, and the next poll or load retry tries again.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING

from obstore.store import AzureStore, GCSStore, S3Store

from berth_server.storage.object_uris import StoreUri

if TYPE_CHECKING:  # typed dicts of obstore's stubs only
    from obstore.store import AzureConfig, ClientConfig, GCSConfig, RetryConfig, S3Config

Store = S3Store | GCSStore | AzureStore

_RETRIES: RetryConfig = {"max_retries": 2, "retry_timeout": datetime.timedelta(seconds=10),
                 "backoff": {"init_backoff": datetime.timedelta(milliseconds=100),
                             "max_backoff": datetime.timedelta(seconds=2), "base": 2}}
# A whole GET, body included, must fit in the request timeout: large shards take minutes.
_CLIENT: ClientConfig = {"connect_timeout": "5s", "timeout": "30m"}


def open_store(uri: StoreUri, environ: Mapping[str, str]) -> Store:
    """A client for `uri`'s bucket (keys are given relative to the bucket, not the prefix)."""
    if uri.scheme == "s3":
        s3, client = _s3(environ)
        return S3Store(uri.bucket, config=s3, client_options=client, retry_config=_RETRIES)
    if uri.scheme == "gs":
        gcs, client = _gcs(environ)
        return GCSStore(uri.bucket, config=gcs, client_options=client, retry_config=_RETRIES)
    azure, client = _azure(environ, uri.account)
    return AzureStore(uri.bucket, config=azure, client_options=client, retry_config=_RETRIES)


def _s3(env: Mapping[str, str]) -> tuple[S3Config, ClientConfig]:
    config: S3Config = {}
    client: ClientConfig = {**_CLIENT}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if not endpoint and env.get("S3_ENDPOINT"):
        endpoint = env["S3_ENDPOINT"]
        if "://" not in endpoint:
            secure = env.get("S3_USE_HTTPS", "1").lower() not in ("0", "false")
            endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    if endpoint:
        config["endpoint"] = endpoint
        client["allow_http"] = endpoint.startswith("http://")
    if env.get("S3_VERIFY_SSL", "1").lower() in ("0", "false"):
        client["allow_invalid_certificates"] = True
    if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
        config["region"] = "us-east-1"
    return config, client


def _gcs(env: Mapping[str, str]) -> tuple[GCSConfig, ClientConfig]:
    config: GCSConfig = {}
    client: ClientConfig = {**_CLIENT}
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator:
        base = emulator if "://" in emulator else f"http://{emulator}"
        config["base_url"] = base.rstrip("/")
        # Emulators take any token; without one obstore would ask the metadata server.
        config["bearer_token"] = "emulator"
        client["allow_http"] = base.startswith("http://")
    return config, client


def _azure(env: Mapping[str, str],
           account: str | None) -> tuple[AzureConfig, ClientConfig]:
    config: AzureConfig = {}
    client: ClientConfig = {**_CLIENT}
    name = env.get("AZURE_STORAGE_ACCOUNT_NAME") or env.get("AZURE_STORAGE_ACCOUNT")
    key = env.get("AZURE_STORAGE_ACCOUNT_KEY") or env.get("AZURE_STORAGE_KEY")
    if name:
        config["account_name"] = name
    if key:
        config["account_key"] = key
    config.update(_connection_string(env.get("AZURE_STORAGE_CONNECTION_STRING", "")))
    if account:
        config["account_name"] = account
    endpoint = config.get("endpoint", "")
    client["allow_http"] = endpoint.startswith("http://") or bool(config.get("use_emulator"))
    return config, client


def _connection_string(text: str) -> AzureConfig:
    """Azure's `Key=value;...` connection string as obstore config keys."""
    parts = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
    config: AzureConfig = {}
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        config["use_emulator"] = True
    if "AccountName" in parts:
        config["account_name"] = parts["AccountName"]
    if "AccountKey" in parts:
        config["account_key"] = parts["AccountKey"]
    if "BlobEndpoint" in parts:
        config["endpoint"] = parts["BlobEndpoint"]
    if "SharedAccessSignature" in parts:
        config["sas_key"] = parts["SharedAccessSignature"]
    return config
