"""The certificates a loopback control plane needs, made fresh per run with `cryptography`.

Why not files checked into the repo: keys in a repository get copied into real clusters. Everything
here is EC P-256 (fast to generate) and valid for a day; one CA signs the apiserver's serving cert
and the admin client cert, and a separate key pair signs ServiceAccount tokens (kube-apiserver
requires one since 1.20, and the controller manager's token controller needs the private half).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Pki:
    """Paths of the PEM files written by `write_pki`; names follow kube-apiserver's flags."""

    ca_cert: pathlib.Path
    serving_cert: pathlib.Path
    serving_key: pathlib.Path
    admin_cert: pathlib.Path
    admin_key: pathlib.Path
    sa_public_key: pathlib.Path
    sa_private_key: pathlib.Path


def write_pki(directory: pathlib.Path, *, server_ips: Sequence[str]) -> Pki:
    """Write a CA, a serving cert for loopback + the in-cluster names, an admin cert, an SA pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(_name("berth-test-ca"), ca_key, ca_key, _name("berth-test-ca"), ca=True)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = _certificate(
        _name("kube-apiserver"),
        serving_key,
        ca_key,
        ca_cert.subject,
        server_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        server_ips=["127.0.0.1", *server_ips],
    )
    admin_key = ec.generate_private_key(ec.SECP256R1())
    # system:masters bypasses RBAC: every component here (kcm, scheduler, kwok) uses this identity.
    admin_cert = _certificate(
        _name("berth-admin", organization="system:masters"), admin_key, ca_key, ca_cert.subject
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    pki = Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_public_key=directory / "sa.pub",
        sa_private_key=directory / "sa.key",
    )
    _write_cert(pki.ca_cert, ca_cert)
    _write_cert(pki.serving_cert, serving_cert)
    _write_key(pki.serving_key, serving_key)
    _write_cert(pki.admin_cert, admin_cert)
    _write_key(pki.admin_key, admin_key)
    _write_key(pki.sa_private_key, sa_key)
    pki.sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def _name(common_name: str, *, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    *,
    ca: bool = False,
    server_names: list[str] | None = None,
    server_ips: list[str] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        return builder.add_extension(usage, critical=True).sign(issuer_key, hashes.SHA256())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server_names or server_ips:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names or []]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips or []]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: pathlib.Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: pathlib.Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
