"""Download speed of a 200 MB SavedModel from moto's S3 server, per client library.

The numbers behind the choice of obstore for s3:// gs:// az:// base paths (README, "Models in
object stores"). Candidates that are not importable are skipped, so the comparison runs with
them put on PYTHONPATH (`pip install --target DIR s3fs boto3`):

    PYTHONPATH=DIR .venv/bin/python -m bench.object_store_clients
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore
from obstore.store import S3Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import processes  # noqa: E402

MODEL_BYTES = 200 * 2**20
FILES = {"saved_model.pb": 2**20, "variables/variables.index": 2**14,
         "variables/variables.data-00000-of-00002": MODEL_BYTES // 2,
         "variables/variables.data-00001-of-00002": MODEL_BYTES // 2 - 2**20 - 2**14}
RANGE_BYTES = 16 * 2**20
BUCKET, PREFIX = "bench", "m/1"
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def obstore_ranges(endpoint: str, out: Path) -> None:
    """obstore, every file cut in 16 MiB ranges fetched by 8 threads (Berth's downloader)."""
    store = S3Store(BUCKET, endpoint=endpoint, client_options={"allow_http": True}, **_keys())
    jobs = [(k, s, min(s + RANGE_BYTES, n)) for k, n in FILES.items()
            for s in range(0, n, RANGE_BYTES)]
    for key, size in FILES.items():
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        with open(out / key, "wb") as file:
            file.truncate(size)

    def fetch(job: tuple[str, int, int]) -> None:
        key, start, end = job
        data = obstore.get_range(store, f"{PREFIX}/{key}", start=start, end=end)
        with open(out / key, "r+b") as file:
            os.pwrite(file.fileno(), memoryview(data), start)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetch, jobs))


def obstore_streams(endpoint: str, out: Path) -> None:
    """obstore, one streamed GET per file, files in parallel."""
    store = S3Store(BUCKET, endpoint=endpoint, client_options={"allow_http": True}, **_keys())

    def fetch(key: str) -> None:
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        with open(out / key, "wb") as file:
            for chunk in obstore.get(store, f"{PREFIX}/{key}").stream(min_chunk_size=2**20):
                file.write(chunk)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fetch, FILES))


def boto3_transfer(endpoint: str, out: Path) -> None:
    """boto3's managed transfer (10 threads of 8 MiB parts per file)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for key in FILES:
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, f"{PREFIX}/{key}", str(out / key))


def s3fs_get(endpoint: str, out: Path) -> None:
    """s3fs (fsspec), a recursive get of the version's prefix."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.get(f"{BUCKET}/{PREFIX}/", str(out) + "/", recursive=True)


def _keys() -> dict[str, str]:
    return {"access_key_id": ENV["AWS_ACCESS_KEY_ID"],
            "secret_access_key": ENV["AWS_SECRET_ACCESS_KEY"], "region": ENV["AWS_REGION"]}


def _upload(endpoint: str) -> None:
    store = S3Store(BUCKET, endpoint=endpoint, client_options={"allow_http": True}, **_keys())
    for key, size in FILES.items():
        obstore.put(store, f"{PREFIX}/{key}", os.urandom(size))


def main() -> None:
    os.environ.update(ENV)
    moto = Path.home() / ".cache" / "berth" / "bin" / "moto_server"
    port = processes.free_port()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    server = processes.start([str(moto), "-p", str(port)], name="moto",
                             log_path=work / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: processes.http_status(endpoint) is not None,
                          timeout_seconds=60, message="moto's S3 port")
        _create_bucket(endpoint)
        _upload(endpoint)
        candidates: list[Callable[[str, Path], None]] = [
            obstore_ranges, obstore_streams, boto3_transfer, s3fs_get]
        print(f"{'client':<18} {'MB/s':>7}  (200 MB SavedModel, moto server on loopback)")
        for candidate in candidates:
            out = work / candidate.__name__
            try:
                started = time.perf_counter()
                candidate(endpoint, out)
                seconds = time.perf_counter() - started
            except ImportError:
                print(f"{candidate.__name__:<18} {'(not installed)':>7}")
                continue
            got = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            assert got == sum(FILES.values()), (candidate.__name__, got)
            print(f"{candidate.__name__:<18} {MODEL_BYTES / 1e6 / seconds:7.0f}")
            shutil.rmtree(out)
    finally:
        server.stop(grace_seconds=5)
        shutil.rmtree(work, ignore_errors=True)


def _create_bucket(endpoint: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT"))


if __name__ == "__main__":
    main()
