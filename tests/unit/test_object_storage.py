"""The object-store pieces that need no store: URIs, completeness, version grouping, the
environment conventions, the store's error messages and the download progress log."""

from __future__ import annotations

import logging

import pytest

from berth_server import errors
from berth_server.storage import object_store, object_uris, remote_versions, store_config
from berth_server.storage.download_progress import DownloadProgress
from berth_server.storage.object_store import ObjectInfo
from berth_server.storage.saved_model_layout import is_complete


class TestUris:
    @pytest.mark.parametrize(("path", "expected"), [
        ("s3://models/fraud", object_uris.StoreUri("s3", "models", "fraud")),
        ("gs://models/a/b/", object_uris.StoreUri("gs", "models", "a/b")),
        ("az://container/m", object_uris.StoreUri("az", "container", "m")),
        ("abfs://c@acct.dfs.core.windows.net/m", object_uris.StoreUri("az", "c", "m", "acct")),
    ])
    def test_a_store_uri_names_its_bucket_and_prefix(
            self, path: str, expected: object_uris.StoreUri) -> None:
        assert object_uris.is_remote(path)
        assert object_uris.parse(path) == expected

    def test_local_paths_and_other_schemes_are_not_stores(self) -> None:
        assert not object_uris.is_remote("/models/m")
        assert not object_uris.is_remote("hdfs://nn/models")

    def test_a_uri_without_a_bucket_is_invalid(self) -> None:
        with pytest.raises(errors.ServingError) as raised:
            object_uris.parse("s3:///m")
        assert raised.value.code == errors.Code.INVALID_ARGUMENT


class TestCompleteness:
    def test_a_graph_with_every_shard_the_index_implies_is_complete(self) -> None:
        assert is_complete({"saved_model.pb": 10, "variables/variables.index": 1,
                            "variables/variables.data-00000-of-00002": 1,
                            "variables/variables.data-00001-of-00002": 1})

    @pytest.mark.parametrize("sizes", [
        {"variables/variables.index": 1},
        {"saved_model.pb": 0},
        {"saved_model.pb": 10, "variables/variables.index": 1},
        {"saved_model.pb": 10, "variables/variables.index": 1,
         "variables/variables.data-00001-of-00002": 1},
    ])
    def test_a_missing_graph_or_shard_is_incomplete(self, sizes: dict[str, int]) -> None:
        assert not is_complete(sizes)


def _info(key: str, size: int = 1) -> ObjectInfo:
    return ObjectInfo(key, size, "etag", 0.0)


def test_listing_groups_into_numeric_versions_and_skips_the_rest() -> None:
    base = object_uris.parse("s3://b/m")
    found = remote_versions.group_versions(base, [
        _info("1/saved_model.pb"), _info("001/saved_model.pb"), _info("2/variables/x"),
        _info("notes/readme"), _info("3"), _info("4/../escape")])
    assert sorted(found) == [1, 2]
    assert found[1].uri == object_uris.parse("s3://b/m/001")  # the first name in order wins
    assert found[2].objects == (_info("variables/x"),)


class TestEnvironment:
    def test_tf_s3_variables_give_an_http_endpoint_without_verification(self) -> None:
        config, client = store_config._s3({"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0",
                                           "S3_VERIFY_SSL": "0"})
        assert config == {"endpoint": "http://minio:9000", "region": "us-east-1"}
        assert client["allow_http"] and client["allow_invalid_certificates"]

    def test_the_aws_endpoint_wins_over_tfs(self) -> None:
        config, _ = store_config._s3({"AWS_ENDPOINT_URL": "https://s3.example",
                                      "S3_ENDPOINT": "minio:9000", "AWS_REGION": "eu-west-1"})
        assert config == {"endpoint": "https://s3.example"}

    def test_an_azure_connection_string_gives_account_key_and_endpoint(self) -> None:
        config, client = store_config._azure({"AZURE_STORAGE_CONNECTION_STRING": (
            "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k;"
            "BlobEndpoint=http://127.0.0.1:10000/a;")}, None)
        assert config == {"account_name": "a", "account_key": "k",
                          "endpoint": "http://127.0.0.1:10000/a"}
        assert client["allow_http"]

    def test_the_gcs_emulator_host_is_the_base_url(self) -> None:
        config, client = store_config._gcs({"STORAGE_EMULATOR_HOST": "localhost:4443"})
        assert config["base_url"] == "http://localhost:4443"
        assert client["allow_http"]


class TestStoreErrors:
    def test_an_s3_refusal_keeps_the_stores_code_and_message(self) -> None:
        error = object_store.store_error("Could not list s3://b/m", Exception(
            "Generic S3 error: ... Server returned non-2xx status code: 403 Forbidden: <?xml?>"
            "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            "\n\nDebug source:\n..."))
        assert error.code == errors.Code.PERMISSION_DENIED
        assert error.message == "Could not list s3://b/m: AccessDenied: Access Denied"

    def test_a_store_that_does_not_answer_is_unavailable(self) -> None:
        error = object_store.store_error("Could not list s3://b/m", Exception(
            "Generic S3 error: Error performing GET http://127.0.0.1:1/b - HTTP error: error "
            "sending request\n\nDebug source:\n..."))
        assert error.code == errors.Code.UNAVAILABLE
        assert "Debug source" not in error.message


def test_a_large_download_logs_bytes_rate_and_time_left(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = DownloadProgress("s3://b/m/1", 200_000_000, interval_seconds=5,
                                clock=lambda: now[0])
    now[0] = 10.0
    with caplog.at_level(logging.INFO):
        progress.add(100_000_000)
        progress.finish(reused_files=1, downloaded_files=2)
    assert "Downloading s3://b/m/1: 100 of 200 MB, 10.0 MB/s, 10 s left" in caplog.text
    assert "2 file(s), 100.0 MB downloaded" in caplog.text
