"""Models served from object stores (s3://, gs://, az://) as from a directory: versions appear,
half-uploaded ones wait, deleted ones unload, store errors end in the status, a store that
went down is polled again, and a restart reuses the local cache.

One emulator per store and session (tests/store_emulators.py); each test owns a prefix in the
bucket and a server of its own. Version 1 answers 0.5x + 2 and version 2 answers 0.5x + 3 (the
exported two_versions model), so the answer to x = 2.0 says which version served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import store_emulators
import waiting
from server_http import post
from test_server_config import reload_error
from test_server_versions import NOT_YET_COMPLETE, RequestLoop, answer, states

if TYPE_CHECKING:
    from conftest import ServerProcess

POLL = "--file_system_poll_wait_seconds=1"
FAST_RETRIES = ("--max_num_load_retries=1", "--load_retry_interval_micros=100000")


@pytest.fixture(scope="session", params=sorted(store_emulators.EMULATORS))
def store(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[store_emulators.Emulator]:
    if missing := store_emulators.missing():
        pytest.fail(f"missing {', '.join(missing)}: run `make store-emulators`")
    emulator = store_emulators.EMULATORS[request.param].start(
        tmp_path_factory.mktemp(f"{request.param}-emulator"))
    yield emulator
    emulator.stop()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A prefix of the bucket for this test alone."""
    return request.node.name.replace("[", "-").rstrip("]")


def version_dir(exported_models: Path, version: int) -> Path:
    return exported_models / "two_versions" / ("123" if version == 1 else "124")


def config_text(base_paths: dict[str, str]) -> str:
    entries = "".join(f'config {{ name: "{name}" base_path: "{path}" model_platform: '
                      f'"tensorflow" }} ' for name, path in base_paths.items())
    return f"model_config_list {{ {entries}}}"


def serve(start_server: Callable[..., ServerProcess], store: store_emulators.Emulator,
          prefix: str, cache: Path, *flags: str,
          env: dict[str, str] | None = None, wait: bool = True) -> ServerProcess:
    return start_server("--model_name=m", f"--model_base_path={store.uri(prefix)}", POLL,
                        *FAST_RETRIES, f"--model_cache_dir={cache}", *flags,
                        env={**store.env, **(env or {})}, wait=wait)


def test_a_model_in_a_bucket_answers_as_tf_serving(
        start_server: Callable[..., ServerProcess], store: store_emulators.Emulator,
        prefix: str, tmp_path: Path, exported_models: Path) -> None:
    store.upload(exported_models / "half_plus_two" / "123", f"{prefix}/123")
    server = serve(start_server, store, prefix, tmp_path / "cache")
    reply = post(server.rest_port, "/v1/models/m:predict", {"instances": [1.0, 2.0, 5.0]})
    assert reply.status == 200, reply.body
    assert reply.json() == {"predictions": [2.5, 3.0, 4.5]}
    assert states(server) == {123: ("AVAILABLE", "OK", "")}


def test_versions_uploaded_and_deleted_while_serving_follow_the_bucket(
        start_server: Callable[..., ServerProcess], store: store_emulators.Emulator,
        prefix: str, tmp_path: Path, exported_models: Path) -> None:
    store.upload(version_dir(exported_models, 1), f"{prefix}/1")
    cache = tmp_path / "cache"
    server = serve(start_server, store, prefix, cache)
    files = sorted(p.relative_to(version_dir(exported_models, 2)).as_posix()
                   for p in version_dir(exported_models, 2).rglob("*") if p.is_file())
    # The graph and the index arrive first; the variables shard they name comes last.
    first = [f for f in files if not f.startswith("variables/variables.data")]
    with RequestLoop(server) as loop:
        for name in first:
            store.put(f"{prefix}/2/{name}", (version_dir(exported_models, 2) / name).read_bytes())
        server.wait_for_log(NOT_YET_COMPLETE.format(2), count=2)
        assert 2 not in states(server)
        for name in sorted(set(files) - set(first)):
            store.put(f"{prefix}/2/{name}", (version_dir(exported_models, 2) / name).read_bytes())
        waiting.wait_for(lambda: answer(server), until=lambda a: a == 4.0, timeout_seconds=60,
                         message="version 2 to answer")
        loop.wait_for_more()
        for name in files:
            store.delete(f"{prefix}/2/{name}")
        waiting.wait_for(lambda: states(server).get(2, ("",))[0], until=lambda s: s == "END",
                         timeout_seconds=60, message="version 2 to be unloaded")
        loop.wait_for_more()
    assert loop.failures == []
    assert answer(server) == 3.0
    assert not (cache / store.scheme / store_emulators.MODELS_BUCKET / prefix / "2").exists()
    assert (cache / store.scheme / store_emulators.MODELS_BUCKET / prefix / "1").is_dir()


def test_a_model_its_credentials_cannot_read_ends_with_the_stores_error_while_others_serve(
        start_server: Callable[..., ServerProcess], store: store_emulators.Emulator,
        prefix: str, tmp_path: Path, exported_models: Path) -> None:
    if store.scheme != "s3":
        pytest.skip("only moto's IAM can let a key list a bucket but not read it")
    store.upload(version_dir(exported_models, 1), f"{prefix}/1")
    store.upload(version_dir(exported_models, 1), f"{prefix}/1", store_emulators.PRIVATE_BUCKET)
    server = serve(start_server, store, prefix, tmp_path / "cache")
    _, details = reload_error(server, config_text(
        {"m": store.uri(prefix), "secret": store.uri(prefix, store_emulators.PRIVATE_BUCKET)}))
    assert "AccessDenied: Access Denied" in details, details
    assert "secret" in details
    assert answer(server) == 3.0
    server.wait_for_log("Loading servable secret version 1 failed")


def test_wrong_credentials_fail_startup_with_the_stores_message(
        start_server: Callable[..., ServerProcess], store: store_emulators.Emulator,
        prefix: str, tmp_path: Path, exported_models: Path) -> None:
    if not store.refusal:
        pytest.skip("fake-gcs-server grants every request")
    store.upload(version_dir(exported_models, 1), f"{prefix}/1")
    server = serve(start_server, store, prefix, tmp_path / "cache",
                   env=store.wrong_credentials, wait=False)
    assert server.process.wait(timeout=120) == 1
    assert "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available" in (
        server.log())
    assert store.refusal in server.log()


def test_a_store_that_goes_down_and_comes_back_is_polled_again(
        start_server: Callable[..., ServerProcess], store: store_emulators.Emulator,
        prefix: str, tmp_path: Path, exported_models: Path) -> None:
    store.upload(version_dir(exported_models, 1), f"{prefix}/1")
    server = serve(start_server, store, prefix, tmp_path / "cache")
    store.proxy.pause()
    try:
        server.wait_for_log(f"Could not list {store.uri(prefix)}", count=2)
        assert answer(server) == 3.0
        store.upload(version_dir(exported_models, 2), f"{prefix}/2")
    finally:
        store.proxy.resume()
    waiting.wait_for(lambda: answer(server), until=lambda a: a == 4.0, timeout_seconds=60,
                     message="version 2 to answer once the store is back")


def test_a_restart_with_a_warm_cache_downloads_nothing(
        start_server: Callable[..., ServerProcess], store: store_emulators.Emulator,
        prefix: str, tmp_path: Path, exported_models: Path) -> None:
    keys = store.upload(version_dir(exported_models, 1), f"{prefix}/1")
    cache = tmp_path / "cache"
    first = serve(start_server, store, prefix, cache)
    assert f"Fetched {store.uri(prefix)}/1: {len(keys)} file(s)" in first.log()
    assert first.stop() == 0
    second = serve(start_server, store, prefix, cache)
    assert answer(second) == 3.0
    assert (f"Fetched {store.uri(prefix)}/1: 0 file(s), 0.0 MB downloaded" in second.log()
            and f"{len(keys)} file(s) reused from the cache" in second.log()), second.log_tail()
