"""`--ssl_config_file`: TF Serving's SSLConfig text proto → gRPC and REST server credentials.

SSLConfig holds PEM *contents* (not paths): `server_key`, `server_cert`, `custom_ca` and
`client_verify` (require and check client certificates against `custom_ca`). gRPC uses it as
TF Serving does. REST (and so the metrics and health routes) uses it only with
`--rest_api_enable_ssl`, because TF Serving's REST port is plain HTTP and clients of a drop-in
replacement must not break; uvicorn needs files, so the PEMs are written to a private temporary
directory that is removed once the REST server has read them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import ssl
import tempfile
from collections.abc import Iterator

import grpc

from berth_server import errors
from berth_server.config import text_protos
from berth_server.protos import ssl_pb2


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    server_key: str
    server_cert: str
    custom_ca: str
    client_verify: bool

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.server_key.encode(), self.server_cert.encode())],
            root_certificates=self.custom_ca.encode() or None,
            require_client_auth=self.client_verify)

    @contextlib.contextmanager
    def uvicorn_kwargs(self) -> Iterator[dict[str, object]]:
        """ssl_* arguments for `uvicorn.Config`, with the PEMs in 0600 files that are removed
        when the block ends: start the server inside it (uvicorn reads them once, at start)."""
        with tempfile.TemporaryDirectory(prefix="berth-tls-") as directory:
            kwargs: dict[str, object] = {
                "ssl_keyfile": _write(directory, "server.key", self.server_key),
                "ssl_certfile": _write(directory, "server.crt", self.server_cert)}
            if self.custom_ca:
                kwargs["ssl_ca_certs"] = _write(directory, "ca.crt", self.custom_ca)
            if self.client_verify:
                kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
            yield kwargs


def read(config_file: str) -> TlsConfig | None:
    if not config_file:
        return None
    config = text_protos.read_file(config_file, ssl_pb2.SSLConfig(),
                                   type_name="tensorflow.serving.SSLConfig")
    if not config.server_key or not config.server_cert:
        raise errors.invalid_argument("SSLConfig needs both server_key and server_cert")
    if config.client_verify and not config.custom_ca:
        raise errors.invalid_argument("SSLConfig client_verify needs custom_ca")
    return TlsConfig(config.server_key, config.server_cert, config.custom_ca,
                     config.client_verify)


def _write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path
