"""TLS from TF Serving's `--ssl_config_file`: gRPC always, REST with `--rest_api_enable_ssl`.

A CA, a server certificate for loopback and a client certificate are made fresh per test with
`cryptography`; the SSLConfig text carries the PEM contents, as TF Serving's does.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import ipaddress
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import tensorflow as tf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

if TYPE_CHECKING:
    from conftest import ServerProcess


@dataclasses.dataclass(frozen=True)
class Pem:
    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _cert(common_name: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey,
          issuer: x509.Name | None, *, server: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None),
                              critical=True))
    if issuer is not None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pem() -> Pem:
    def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    def pem_cert(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("berth test CA", ca_key, ca_key, None)
    return Pem(pem_cert(ca), pem_cert(_cert("localhost", server_key, ca_key, ca.subject,
                                             server=True)), pem_key(server_key),
               pem_cert(_cert("client", client_key, ca_key, ca.subject)), pem_key(client_key))


def ssl_config(path: Path, pem: Pem, *, client_verify: bool = False) -> Path:
    path.write_text(f"server_key: {json.dumps(pem.server_key)}\n"
                    f"server_cert: {json.dumps(pem.server_cert)}\n"
                    f"custom_ca: {json.dumps(pem.ca_cert)}\n"
                    f"client_verify: {str(client_verify).lower()}\n")
    return path


def predict(channel: grpc.Channel) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return list(stub.Predict(request, timeout=30).outputs["y"].float_val)


def secure_channel(server: ServerProcess, pem: Pem, *, with_client_cert: bool) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pem.ca_cert.encode(),
        private_key=pem.client_key.encode() if with_client_cert else None,
        certificate_chain=pem.client_cert.encode() if with_client_cert else None)
    return grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", credentials)


def https_get(server: ServerProcess, pem: Pem, path: str, *, with_client_cert: bool = False,
              ) -> int:
    context = ssl.create_default_context(cadata=pem.ca_cert)
    if with_client_cert:
        directory = server.log_path.parent
        (directory / "client.crt").write_text(pem.client_cert)
        (directory / "client.key").write_text(pem.client_key)
        context.load_cert_chain(directory / "client.crt", directory / "client.key")
    connection = http.client.HTTPSConnection("127.0.0.1", server.rest_port, context=context,
                                             timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.fixture
def model_flags(exported_models: Path) -> list[str]:
    return [f"--model_base_path={exported_models / 'half_plus_two'}", "--model_name=half_plus_two"]


def test_grpc_and_rest_serve_tls_with_the_configured_certificate(
        tmp_path: Path, model_flags: list[str], start_server: Callable[..., ServerProcess]) -> None:
    pem = make_pem()
    server = start_server(*model_flags, f"--ssl_config_file={ssl_config(tmp_path / 's', pem)}",
                          "--rest_api_enable_ssl")
    with secure_channel(server, pem, with_client_cert=False) as channel:
        assert predict(channel) == [2.5]
    assert https_get(server, pem, "/v1/models/half_plus_two") == 200
    assert https_get(server, pem, "/readyz") == 200
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as plain, \
            pytest.raises(grpc.RpcError) as caught:
        predict(plain)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    plain_http = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain_http.request("GET", "/v1/models/half_plus_two")
        plain_http.getresponse()
    plain_http.close()


def test_rest_stays_plain_http_without_its_flag_as_in_tf_serving(
        tmp_path: Path, model_flags: list[str], start_server: Callable[..., ServerProcess]) -> None:
    pem = make_pem()
    server = start_server(*model_flags, f"--ssl_config_file={ssl_config(tmp_path / 's', pem)}")
    with secure_channel(server, pem, with_client_cert=False) as channel:
        assert predict(channel) == [2.5]
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    connection.request("GET", "/v1/models/half_plus_two")
    assert connection.getresponse().status == 200
    connection.close()


def test_client_verify_requires_a_client_certificate_from_the_ca(
        tmp_path: Path, model_flags: list[str], start_server: Callable[..., ServerProcess]) -> None:
    pem = make_pem()
    config = ssl_config(tmp_path / "s", pem, client_verify=True)
    server = start_server(*model_flags, f"--ssl_config_file={config}", "--rest_api_enable_ssl")
    with secure_channel(server, pem, with_client_cert=True) as channel:
        assert predict(channel) == [2.5]
    with secure_channel(server, pem, with_client_cert=False) as channel, \
            pytest.raises(grpc.RpcError) as caught:
        predict(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert https_get(server, pem, "/healthz", with_client_cert=True) == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(server, pem, "/healthz")


def test_a_broken_ssl_config_stops_startup(
        tmp_path: Path, model_flags: list[str], start_server: Callable[..., ServerProcess]) -> None:
    config = tmp_path / "ssl.config"
    config.write_text("server_key: this is not text proto")
    server = start_server(*model_flags, f"--ssl_config_file={config}", wait=False)
    assert server.process.wait(timeout=90) != 0
    assert "Failed to start server" in server.log()
    assert "SSLConfig" in server.log()
