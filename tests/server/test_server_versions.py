"""Version life cycle on disk: new, removed, half-written and corrupt versions, policies, labels.

Each test owns a base path and a server polling it every second. Version 1 of model `m` answers
0.5x + 2 and version 2 answers 0.5x + 3 (copies of the exported two_versions model), so the
answer to x = 2.0 says which version served: 3.0 or 4.0.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import busy_model
import grpc
import pytest
import tensorflow as tf
from google.protobuf import text_format
from server_http import get, post
from tensorflow_serving.apis import model_management_pb2, predict_pb2
from tensorflow_serving.config import model_server_config_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess

POLL = "--file_system_poll_wait_seconds=1"
FAST_RETRIES = ("--max_num_load_retries=1", "--load_retry_interval_micros=100000")
ANSWER = {1: 3.0, 2: 4.0, 3: 4.0}


def copy_version(exported_models: Path, base: Path, version: int) -> Path:
    """Copy a complete version in, the way users do it (`cp -r`): not atomic."""
    source = exported_models / "two_versions" / ("123" if version == 1 else "124")
    return Path(shutil.copytree(source, base / str(version)))


def wait_for(predicate: Callable[[], Any], timeout_seconds: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds}s waiting for {what}")
        time.sleep(0.1)


def states(server: ServerProcess, model: str = "m") -> dict[int, tuple[str, str, str]]:
    """version → (state, error_code, error_message) from the REST status URL."""
    reply = get(server.rest_port, f"/v1/models/{model}")
    if reply.status != 200:
        return {}
    return {
        int(v["version"]): (v["state"], v["status"]["error_code"], v["status"]["error_message"])
        for v in reply.json()["model_version_status"]
    }


def answer(server: ServerProcess, path: str = "/v1/models/m") -> float:
    reply = post(server.rest_port, f"{path}:predict", {"instances": [2.0]})
    assert reply.status == 200, reply.body
    return float(reply.json()["predictions"][0])


class RequestLoop:
    """A client predicting in a loop on its own thread; it records every failure and answer."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self._stop = threading.Event()
        self.answers: list[float] = []
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = post(self._server.rest_port, "/v1/models/m:predict", {"instances": [2.0]})
                if reply.status == 200:
                    self.answers.append(float(reply.json()["predictions"][0]))
                else:
                    self.failures.append(f"{reply.status} {reply.body!r}")
            except OSError as error:
                self.failures.append(repr(error))

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def config_text(base: Path, policy: str = "", labels: dict[str, int] | None = None) -> str:
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(
        name="m", base_path=str(base), model_platform="tensorflow"
    )
    if policy:
        text_format.Merge(policy, model.model_version_policy)
    for label, version in (labels or {}).items():
        model.version_labels[label] = version
    return text_format.MessageToString(config)


@pytest.fixture
def base(tmp_path: Path, exported_models: Path) -> Path:
    """A base path holding version 1 only."""
    base = tmp_path / "m"
    base.mkdir()
    copy_version(exported_models, base, 1)
    return base


def serve_base(
    start_server: Callable[..., ServerProcess], base: Path, *flags: str
) -> ServerProcess:
    return start_server("--model_name=m", f"--model_base_path={base}", POLL, *flags)


class TestNewAndRemovedVersions:
    def test_a_version_copied_in_is_served_without_a_failed_request(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base)
        with RequestLoop(server) as loop:
            wait_for(lambda: loop.answers, what="the first answer")
            copied_at = time.monotonic()
            copy_version(exported_models, base, 2)
            wait_for(lambda: loop.answers[-1] == 4.0, what="version 2 to answer")
            served_after = time.monotonic() - copied_at
            time.sleep(0.5)
        assert loop.failures == []
        assert served_after < 15  # a few polls, even on a loaded machine
        assert set(loop.answers) == {3.0, 4.0}
        assert loop.answers[-1] == 4.0
        wait_for(lambda: states(server)[1][0] == "END", what="version 1 to unload")
        assert states(server) == {1: ("END", "OK", ""), 2: ("AVAILABLE", "OK", "")}

    def test_a_removed_version_is_unloaded_and_the_previous_one_serves_again(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        copy_version(exported_models, base, 2)
        server = serve_base(start_server, base)
        assert answer(server) == 4.0
        with RequestLoop(server) as loop:
            wait_for(lambda: loop.answers, what="the first answer")
            shutil.rmtree(base / "2")
            wait_for(lambda: states(server).get(2, ("",))[0] == "END", what="version 2 to unload")
            time.sleep(0.5)
        assert loop.failures == []
        assert answer(server) == 3.0
        assert states(server)[1][0] == "AVAILABLE"

    def test_a_version_removed_then_copied_back_is_served_again(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base)
        copy_version(exported_models, base, 2)
        wait_for(lambda: answer(server) == 4.0, what="version 2 to answer")
        shutil.rmtree(base / "2")
        wait_for(lambda: answer(server) == 3.0, what="version 1 to answer again")
        copy_version(exported_models, base, 2)
        wait_for(lambda: answer(server) == 4.0, what="version 2 to answer again")
        assert states(server)[2][0] == "AVAILABLE"

    def test_with_the_all_policy_removing_a_version_leaves_the_others_loaded(
        self,
        start_server: Callable[..., ServerProcess],
        base: Path,
        tmp_path: Path,
        exported_models: Path,
    ) -> None:
        copy_version(exported_models, base, 2)
        config = tmp_path / "models.config"
        config.write_text(config_text(base, "all {}"))
        server = start_server(f"--model_config_file={config}", POLL)
        assert states(server) == {1: ("AVAILABLE", "OK", ""), 2: ("AVAILABLE", "OK", "")}
        shutil.rmtree(base / "2")
        wait_for(lambda: states(server)[2][0] == "END", what="version 2 to unload")
        assert states(server)[1][0] == "AVAILABLE"
        assert answer(server) == 3.0
        reply = post(server.rest_port, "/v1/models/m/versions/2:predict", {"instances": [2.0]})
        assert (reply.status, reply.error) == (
            404,
            "Servable not found for request: Specific(m, 2)",
        )


    def test_an_in_flight_request_finishes_on_the_version_it_started_on(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
        base = tmp_path / "busy"
        busy_model.export_busy_model(base, matmuls=5000, version=1)  # seconds per request
        server = serve_base(start_server, base)
        slow: dict[str, Any] = {}

        def slow_request() -> None:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "m"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([7.0], dtype=tf.float32))
            slow["response"] = server.predict.Predict(request, timeout=120)
            slow["finished"] = time.monotonic()

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.5)
        busy_model.export_busy_model(base, matmuls=1, version=2)
        wait_for(lambda: states(server).get(2, ("",))[0] == "AVAILABLE", what="version 2")
        version_2_serving = time.monotonic()
        old_state = states(server)[1][0]
        thread.join(timeout=120)
        assert slow["finished"] > version_2_serving, "the slow request ended before the swap"
        assert old_state == "UNLOADING"  # waiting for the request it still serves
        assert slow["response"].model_spec.version.value == 1
        assert slow["response"].outputs["y"].float_val == [7.0]
        wait_for(lambda: states(server)[1][0] == "END", what="version 1 to unload")


class TestHalfWrittenVersions:
    def test_a_version_without_its_saved_model_pb_is_not_loaded_until_it_arrives(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base)
        source = exported_models / "two_versions" / "124"
        partial = base / "2"
        shutil.copytree(source / "variables", partial / "variables")
        shutil.copytree(source / "assets", partial / "assets")
        time.sleep(2.5)  # more than two polls
        assert 2 not in states(server)
        assert answer(server) == 3.0
        shutil.copy(source / "saved_model.pb", partial / "saved_model.pb")
        wait_for(lambda: answer(server) == 4.0, what="the completed version to answer")
        assert states(server)[2] == ("AVAILABLE", "OK", "")

    def test_a_version_missing_a_variables_shard_is_not_loaded_until_it_arrives(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base)
        source = exported_models / "two_versions" / "124"
        partial = base / "2"
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns("variables.data-*"))
        time.sleep(2.5)
        assert 2 not in states(server)
        assert answer(server) == 3.0
        for shard in (source / "variables").glob("variables.data-*"):
            shutil.copy(shard, partial / "variables" / shard.name)
        wait_for(lambda: answer(server) == 4.0, what="the completed version to answer")
        assert states(server)[2] == ("AVAILABLE", "OK", "")


class TestCorruptVersions:
    def test_a_corrupt_version_ends_with_its_error_while_the_old_one_serves(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base, *FAST_RETRIES)
        source = exported_models / "two_versions" / "124"
        corrupt = base / "2"
        shutil.copytree(source, corrupt)
        (corrupt / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        with RequestLoop(server) as loop:
            state, code, message = wait_for(
                lambda: states(server).get(2, ("",))[0] == "END" and states(server)[2],
                what="version 2 to fail",
            )
            time.sleep(0.5)
        assert loop.failures == []
        assert set(loop.answers) == {3.0}
        assert code != "OK"
        assert message
        assert states(server)[1] == ("AVAILABLE", "OK", "")
        assert "Loading servable m version 2 failed" in server.log()

    def test_a_corrupt_version_is_loaded_once_its_directory_is_fixed(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base, *FAST_RETRIES)
        source = exported_models / "two_versions" / "124"
        corrupt = base / "2"
        shutil.copytree(source, corrupt)
        (corrupt / "saved_model.pb").write_bytes(b"this is not a SavedModel")
        wait_for(lambda: states(server).get(2, ("",))[0] == "END", what="version 2 to fail")
        shutil.copy(source / "saved_model.pb", corrupt / "saved_model.pb")
        wait_for(lambda: answer(server) == 4.0, what="the fixed version to answer")
        assert states(server)[2] == ("AVAILABLE", "OK", "")

    def test_a_removed_version_keeps_serving_while_its_only_replacement_fails(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        """Availability first (TF Serving's policy): nothing replaces version 1, so it stays."""
        server = serve_base(start_server, base, *FAST_RETRIES)
        shutil.rmtree(base / "1")
        copy_version(exported_models, base, 2)
        (base / "2" / "saved_model.pb").write_bytes(b"garbage")
        wait_for(lambda: states(server).get(2, ("",))[0] == "END", what="version 2 to fail")
        time.sleep(1.5)
        assert states(server)[1] == ("AVAILABLE", "OK", "")
        assert answer(server) == 3.0


class TestVersionPolicies:
    def test_latest_two_serves_the_two_highest_versions(
        self,
        start_server: Callable[..., ServerProcess],
        base: Path,
        tmp_path: Path,
        exported_models: Path,
    ) -> None:
        copy_version(exported_models, base, 2)
        copy_version(exported_models, base, 3)
        config = tmp_path / "models.config"
        config.write_text(config_text(base, "latest { num_versions: 2 }"))
        server = start_server(f"--model_config_file={config}", POLL)
        assert states(server) == {2: ("AVAILABLE", "OK", ""), 3: ("AVAILABLE", "OK", "")}
        reply = post(server.rest_port, "/v1/models/m/versions/1:predict", {"instances": [2.0]})
        assert reply.status == 404

    def test_specific_serves_exactly_the_listed_versions(
        self,
        start_server: Callable[..., ServerProcess],
        base: Path,
        tmp_path: Path,
        exported_models: Path,
    ) -> None:
        copy_version(exported_models, base, 2)
        config = tmp_path / "models.config"
        config.write_text(config_text(base, "specific { versions: 1 }"))
        server = start_server(f"--model_config_file={config}", POLL)
        assert states(server) == {1: ("AVAILABLE", "OK", "")}
        assert answer(server) == 3.0

    def test_all_serves_a_new_version_next_to_the_old_ones(
        self,
        start_server: Callable[..., ServerProcess],
        base: Path,
        tmp_path: Path,
        exported_models: Path,
    ) -> None:
        config = tmp_path / "models.config"
        config.write_text(config_text(base, "all {}"))
        server = start_server(f"--model_config_file={config}", POLL)
        copy_version(exported_models, base, 2)
        wait_for(lambda: states(server).get(2, ("",))[0] == "AVAILABLE", what="version 2")
        assert states(server)[1][0] == "AVAILABLE"
        assert answer(server, "/v1/models/m/versions/1") == 3.0
        assert answer(server) == 4.0


class TestLabels:
    def reload(self, server: ServerProcess, text: str) -> grpc.StatusCode:
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Merge(text, request.config)
        try:
            response = server.model_service.HandleReloadConfigRequest(request, timeout=60)
        except grpc.RpcError as error:
            return error.code()
        assert response.status.error_code == 0
        return grpc.StatusCode.OK

    def test_a_label_moves_to_another_version_by_a_config_reload(
        self,
        start_server: Callable[..., ServerProcess],
        base: Path,
        tmp_path: Path,
        exported_models: Path,
    ) -> None:
        copy_version(exported_models, base, 2)
        config = tmp_path / "models.config"
        config.write_text(config_text(base, "all {}", {"stable": 1, "canary": 2}))
        server = start_server(f"--model_config_file={config}", POLL)
        assert answer(server, "/v1/models/m/labels/stable") == 3.0
        assert answer(server, "/v1/models/m/labels/canary") == 4.0
        moved = config_text(base, "all {}", {"stable": 2})
        assert self.reload(server, moved) == grpc.StatusCode.OK
        assert answer(server, "/v1/models/m/labels/stable") == 4.0
        reply = post(server.rest_port, "/v1/models/m/labels/canary:predict", {"instances": [2.0]})
        assert (reply.status, reply.error) == (400, "Unrecognized servable version label: canary")

    def test_a_label_on_a_version_that_is_not_loaded_is_refused(
        self, start_server: Callable[..., ServerProcess], base: Path, tmp_path: Path
    ) -> None:
        config = tmp_path / "models.config"
        config.write_text(config_text(base, "", {"stable": 1}))
        server = start_server(f"--model_config_file={config}", POLL)
        refused = config_text(base, "", {"stable": 7})
        assert self.reload(server, refused) == grpc.StatusCode.FAILED_PRECONDITION
        assert answer(server, "/v1/models/m/labels/stable") == 3.0
