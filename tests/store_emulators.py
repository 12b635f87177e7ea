"""Object-store emulators on loopback, as the server sees real stores: moto's S3 server,
fake-gcs-server and Azurite, installed by `make store-emulators`
(tools/build-store-emulators.sh).

Each emulator sits behind a TcpProxy: the server is given the proxy's address, so a test can
take the store down and bring it back with its contents intact; the test itself writes
straight to the emulator.

moto runs with IAM enforced: the setup creates a user whose key may do anything in bucket
`models` and only list and write in bucket `private`, so reading a model there is the store's
real AccessDenied, and a wrong secret key its real SignatureDoesNotMatch. Azurite checks its
account key too; fake-gcs-server grants every request.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import obstore
import processes
from obstore.store import AzureStore, S3Store
from tcp_proxy import TcpProxy

BIN_DIR = Path.home() / ".cache" / "berth" / "bin"
MODELS_BUCKET, PRIVATE_BUCKET = "models", "private"
_S3_SETUP_ACTIONS = 5  # CreateUser, CreateAccessKey, PutUserPolicy, CreateBucket x 2
_S3_SETUP = """
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id="setup",
          aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="berth")
key = iam.create_access_key(UserName="berth")["AccessKey"]
arns = lambda b: [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]
iam.put_user_policy(UserName="berth", PolicyName="models", PolicyDocument=json.dumps({
    "Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": arns("models")},
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:PutObject", "s3:DeleteObject"],
         "Resource": arns("private")}]}))
s3 = boto3.client("s3", **kw)
for bucket in ("models", "private"):
    s3.create_bucket(Bucket=bucket)
print(json.dumps([key["AccessKeyId"], key["SecretAccessKey"]]))
"""


def missing() -> list[str]:
    """The emulator binaries not installed yet."""
    return [n for n in ("moto_server", "fake-gcs-server", "azurite-blob")
            if not (BIN_DIR / n).exists()]


class Emulator:
    """A running emulator: `env` is what the server needs, `put`/`delete` change the store."""

    scheme = ""
    refusal = ""  # the store's error code for `wrong_credentials`; "" when it checks none

    def __init__(self, process: processes.LoggedProcess, proxy: TcpProxy) -> None:
        self.process = process
        self.proxy = proxy
        self.port = proxy.target_port
        self.env: dict[str, str] = {}
        self.wrong_credentials: dict[str, str] = {}

    def uri(self, prefix: str, bucket: str = MODELS_BUCKET) -> str:
        return f"{self.scheme}://{bucket}/{prefix}"

    def put(self, key: str, data: bytes, bucket: str = MODELS_BUCKET) -> None:
        raise NotImplementedError

    def delete(self, key: str, bucket: str = MODELS_BUCKET) -> None:
        raise NotImplementedError

    def upload(self, version_dir: Path, prefix: str, bucket: str = MODELS_BUCKET) -> list[str]:
        """Upload every file of a local version dir under `prefix`; returns the keys."""
        keys = []
        for file in sorted(p for p in version_dir.rglob("*") if p.is_file()):
            key = f"{prefix}/{file.relative_to(version_dir).as_posix()}"
            self.put(key, file.read_bytes(), bucket)
            keys.append(key)
        return keys

    def stop(self) -> None:
        self.proxy.pause()
        self.process.stop(grace_seconds=10)


class S3Emulator(Emulator):
    scheme = "s3"
    refusal = "SignatureDoesNotMatch"

    @classmethod
    def start(cls, work_dir: Path) -> S3Emulator:
        port = processes.free_port()
        process = processes.start(
            [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], name="moto",
            log_path=work_dir / "moto.log", die_with_parent=True,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_S3_SETUP_ACTIONS)})
        process.wait_until(lambda: processes.port_accepts(port), timeout_seconds=60,
                           message="moto's S3 port")
        python = (BIN_DIR / "moto_server").resolve().parent / "python"
        setup = subprocess.run([str(python), "-c", _S3_SETUP, f"http://127.0.0.1:{port}"],
                               check=True, capture_output=True, text=True)
        emulator = cls(process, TcpProxy(port))
        emulator.key_id, emulator.secret = json.loads(setup.stdout)
        emulator.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{emulator.proxy.port}",
                        "AWS_ACCESS_KEY_ID": emulator.key_id,
                        "AWS_SECRET_ACCESS_KEY": emulator.secret, "AWS_REGION": "us-east-1"}
        emulator.wrong_credentials = {"AWS_SECRET_ACCESS_KEY": "wrong"}
        return emulator

    def _store(self, bucket: str) -> S3Store:
        return S3Store(bucket, endpoint=f"http://127.0.0.1:{self.port}", region="us-east-1",
                       access_key_id=self.key_id, secret_access_key=self.secret,
                       client_options={"allow_http": True})

    def put(self, key: str, data: bytes, bucket: str = MODELS_BUCKET) -> None:
        obstore.put(self._store(bucket), key, data)

    def delete(self, key: str, bucket: str = MODELS_BUCKET) -> None:
        obstore.delete(self._store(bucket), key)


class GcsEmulator(Emulator):
    scheme = "gs"

    @classmethod
    def start(cls, work_dir: Path) -> GcsEmulator:
        port = processes.free_port()
        proxy = TcpProxy(port)  # its address is the one the server calls the XML API at
        process = processes.start(
            [str(BIN_DIR / "fake-gcs-server"), "-scheme", "http", "-host", "127.0.0.1",
             "-port", str(port), "-backend", "memory", "-public-host", f"127.0.0.1:{proxy.port}"],
            name="fake-gcs-server", log_path=work_dir / "fake-gcs-server.log",
            die_with_parent=True)
        process.wait_until(lambda: processes.port_accepts(port), timeout_seconds=60,
                           message="fake-gcs-server's port")
        emulator = cls(process, proxy)
        for bucket in (MODELS_BUCKET, PRIVATE_BUCKET):
            emulator._call("POST", "/storage/v1/b", json.dumps({"name": bucket}).encode())
        emulator.env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{emulator.proxy.port}"}
        return emulator

    def _call(self, method: str, path: str, body: bytes | None = None) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body,
                                         method=method)
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()

    def put(self, key: str, data: bytes, bucket: str = MODELS_BUCKET) -> None:
        name = urllib.parse.quote(key, safe="")
        self._call("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}", data)

    def delete(self, key: str, bucket: str = MODELS_BUCKET) -> None:
        self._call("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(key, safe='')}")


class AzureEmulator(Emulator):
    """Azurite's blob service with its well-known development account, path-style URLs."""

    scheme = "az"
    refusal = "AuthorizationFailure"
    account = "devstoreaccount1"
    key = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBe"
           "ksoGMGw==")

    @classmethod
    def start(cls, work_dir: Path) -> AzureEmulator:
        port = processes.free_port()
        process = processes.start(
            [str(BIN_DIR / "azurite-blob"), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--inMemoryPersistence", "--skipApiVersionCheck"], cwd=work_dir,
            name="azurite", log_path=work_dir / "azurite.log", die_with_parent=True)
        process.wait_until(lambda: processes.port_accepts(port), timeout_seconds=60,
                           message="Azurite's blob port")
        emulator = cls(process, TcpProxy(port))
        for container in (MODELS_BUCKET, PRIVATE_BUCKET):
            emulator._create_container(container)
        emulator.env = {"AZURE_STORAGE_CONNECTION_STRING": emulator._connection_string(
            emulator.key, emulator.proxy.port)}
        wrong = base64.b64encode(b"wrong" * 12).decode()
        emulator.wrong_credentials = {"AZURE_STORAGE_CONNECTION_STRING":
                                      emulator._connection_string(wrong, emulator.proxy.port)}
        return emulator

    def _connection_string(self, key: str, port: int) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{port}/{self.account};")

    def _create_container(self, name: str) -> None:
        """Create Container with a Shared Key signature (obstore creates no containers)."""
        headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
        signed = "PUT\n" + "\n" * 11 + "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        signed += f"/{self.account}/{self.account}/{name}\nrestype:container"
        signature = base64.b64encode(hmac.new(base64.b64decode(self.key), signed.encode(),
                                              hashlib.sha256).digest()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{self.account}/{name}?restype=container", method="PUT",
            headers={**headers, "Authorization": f"SharedKey {self.account}:{signature}"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()

    def _store(self, container: str) -> AzureStore:
        return AzureStore(container, account_name=self.account, account_key=self.key,
                          endpoint=f"http://127.0.0.1:{self.port}/{self.account}",
                          client_options={"allow_http": True})

    def put(self, key: str, data: bytes, bucket: str = MODELS_BUCKET) -> None:
        obstore.put(self._store(bucket), key, data)

    def delete(self, key: str, bucket: str = MODELS_BUCKET) -> None:
        obstore.delete(self._store(bucket), key)


EMULATORS: dict[str, type[S3Emulator] | type[GcsEmulator] | type[AzureEmulator]] = {
    "s3": S3Emulator, "gs": GcsEmulator, "az": AzureEmulator}
