"""Version life cycle on disk: new, removed, half-written and corrupt versions, policies, labels.

Each test owns a base path and a server polling it every second. Version 1 of model `m` answers
0.5x + 2 and version 2 answers 0.5x + 3 (copies of the exported two_versions model), so the
answer to x = 2.0 says which version served: 3.0 or 4.0.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gated_model
import grpc
import pytest
import tensorflow as tf
import waiting
from google.protobuf import text_format
from server_http import get, post
from tensorflow_serving.apis import model_management_pb2, predict_pb2
from tensorflow_serving.config import model_server_config_pb2

if TYPE_CHECKING:
    from conftest import ServerProcess

POLL = "--file_system_poll_wait_seconds=1"
FAST_RETRIES = ("--max_num_load_retries=1", "--load_retry_interval_micros=100000")
ANSWER = {1: 3.0, 2: 4.0, 3: 4.0}
NOT_YET_COMPLETE = "Version {} of model m is not completely written yet; waiting"


def copy_version(exported_models: Path, base: Path, version: int) -> Path:
    """Copy a complete version in, the way users do it (`cp -r`): not atomic."""
    source = exported_models / "two_versions" / ("123" if version == 1 else "124")
    return Path(shutil.copytree(source, base / str(version)))


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

    def wait_for_more(self, count: int = 5) -> None:
        """Until `count` more requests have been answered (or failed) than so far."""
        seen = len(self.answers) + len(self.failures)
        waiting.wait_for(lambda: len(self.answers) + len(self.failures) >= seen + count,
                         timeout_seconds=60, message=f"{count} more requests to be answered")


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
            waiting.wait_for(lambda: loop.answers, timeout_seconds=60, message="the first answer")
            copy_version(exported_models, base, 2)
            waiting.wait_for(lambda: loop.answers[-1] == 4.0,
                             timeout_seconds=60, message="version 2 to answer")
            waiting.wait_for(lambda: states(server)[1][0] == "END",
                             timeout_seconds=60, message="version 1 to unload")
            loop.wait_for_more()  # requests go on after the unload too
        assert loop.failures == []
        assert set(loop.answers) == {3.0, 4.0}
        assert loop.answers[-1] == 4.0
        assert states(server) == {1: ("END", "OK", ""), 2: ("AVAILABLE", "OK", "")}

    def test_a_removed_version_is_unloaded_and_the_previous_one_serves_again(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        copy_version(exported_models, base, 2)
        server = serve_base(start_server, base)
        assert answer(server) == 4.0
        with RequestLoop(server) as loop:
            waiting.wait_for(lambda: loop.answers, timeout_seconds=60, message="the first answer")
            shutil.rmtree(base / "2")
            waiting.wait_for(lambda: states(server).get(2, ("",))[0] == "END",
                             timeout_seconds=60, message="version 2 to unload")
            loop.wait_for_more()
        assert loop.failures == []
        assert answer(server) == 3.0
        assert states(server)[1][0] == "AVAILABLE"

    def test_a_version_removed_then_copied_back_is_served_again(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base)
        copy_version(exported_models, base, 2)
        waiting.wait_for(lambda: answer(server) == 4.0,
                         timeout_seconds=60, message="version 2 to answer")
        shutil.rmtree(base / "2")
        waiting.wait_for(lambda: answer(server) == 3.0,
                         timeout_seconds=60, message="version 1 to answer again")
        copy_version(exported_models, base, 2)
        waiting.wait_for(lambda: answer(server) == 4.0,
                         timeout_seconds=60, message="version 2 to answer again")
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
        # Startup waits for a version of each model; the policy's others load after it.
        both = {1: ("AVAILABLE", "OK", ""), 2: ("AVAILABLE", "OK", "")}
        waiting.wait_for(lambda: states(server), until=lambda seen: seen == both,
                         timeout_seconds=60, message="every aspired version to load")
        shutil.rmtree(base / "2")
        waiting.wait_for(lambda: states(server)[2][0] == "END",
                         timeout_seconds=60, message="version 2 to unload")
        assert states(server)[1][0] == "AVAILABLE"
        assert answer(server) == 3.0
        reply = post(server.rest_port, "/v1/models/m/versions/2:predict", {"instances": [2.0]})
        assert (reply.status, reply.error) == (
            404,
            "Servable not found for request: Specific(m, 2)",
        )


    def test_an_in_flight_request_finishes_on_the_version_it_started_on(
            self, start_server: Callable[..., ServerProcess], tmp_path: Path,
            exported_models: Path) -> None:
        base, gate = tmp_path / "m", tmp_path / "gate"
        gated_model.export_gated_model(base, gate, version=1)  # answers once the gate opens
        server = serve_base(start_server, base, gated_model.monitoring_flag(tmp_path))
        slow: dict[str, Any] = {}

        def slow_request() -> None:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "m"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([7.0], dtype=tf.float32))
            slow["response"] = server.predict.Predict(request, timeout=120)

        thread = threading.Thread(target=slow_request)
        thread.start()
        try:
            waiting.wait_for(lambda: gated_model.in_flight(server.rest_port, "m") == 1,
                             timeout_seconds=60, message="the request to run on version 1")
            copy_version(exported_models, base, 2)
            waiting.wait_for(lambda: states(server).get(2, ("",))[0] == "AVAILABLE",
                             timeout_seconds=60, message="version 2")
            old_state = states(server)[1][0]
            ended_before_the_swap = "response" in slow
        finally:
            gated_model.open_gate(gate)
        thread.join(timeout=120)
        assert not ended_before_the_swap, "the slow request ended before the swap"
        assert old_state == "UNLOADING"  # waiting for the request it still serves
        assert slow["response"].model_spec.version.value == 1
        assert slow["response"].outputs["y"].float_val == [7.0]
        waiting.wait_for(lambda: states(server)[1][0] == "END",
                         timeout_seconds=60, message="version 1 to unload")


class TestHalfWrittenVersions:
    def test_a_version_without_its_saved_model_pb_is_not_loaded_until_it_arrives(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base)
        source = exported_models / "two_versions" / "124"
        partial = base / "2"
        shutil.copytree(source / "variables", partial / "variables")
        shutil.copytree(source / "assets", partial / "assets")
        server.wait_for_log(NOT_YET_COMPLETE.format(2), count=2)  # two polls skipped it
        assert 2 not in states(server)
        assert answer(server) == 3.0
        shutil.copy(source / "saved_model.pb", partial / "saved_model.pb")
        waiting.wait_for(lambda: answer(server) == 4.0,
                         timeout_seconds=60, message="the completed version to answer")
        assert states(server)[2] == ("AVAILABLE", "OK", "")

    def test_a_version_missing_a_variables_shard_is_not_loaded_until_it_arrives(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        server = serve_base(start_server, base)
        source = exported_models / "two_versions" / "124"
        partial = base / "2"
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns("variables.data-*"))
        server.wait_for_log(NOT_YET_COMPLETE.format(2), count=2)  # two polls skipped it
        assert 2 not in states(server)
        assert answer(server) == 3.0
        for shard in (source / "variables").glob("variables.data-*"):
            shutil.copy(shard, partial / "variables" / shard.name)
        waiting.wait_for(lambda: answer(server) == 4.0,
                         timeout_seconds=60, message="the completed version to answer")
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
            state, code, message = waiting.wait_for(
                lambda: states(server).get(2, ("",))[0] == "END" and states(server)[2],
                timeout_seconds=60, message="version 2 to fail",
            )
            loop.wait_for_more()
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
        waiting.wait_for(lambda: states(server).get(2, ("",))[0] == "END",
                         timeout_seconds=60, message="version 2 to fail")
        shutil.copy(source / "saved_model.pb", corrupt / "saved_model.pb")
        waiting.wait_for(lambda: answer(server) == 4.0,
                         timeout_seconds=60, message="the fixed version to answer")
        assert states(server)[2] == ("AVAILABLE", "OK", "")

    def test_a_removed_version_keeps_serving_while_its_only_replacement_fails(
        self, start_server: Callable[..., ServerProcess], base: Path, exported_models: Path
    ) -> None:
        """Availability first (TF Serving's policy): nothing replaces version 1, so it stays."""
        server = serve_base(start_server, base, *FAST_RETRIES)
        shutil.rmtree(base / "1")
        copy_version(exported_models, base, 2)
        (base / "2" / "saved_model.pb").write_bytes(b"garbage")
        waiting.wait_for(lambda: states(server).get(2, ("",))[0] == "END",
                         timeout_seconds=60, message="version 2 to fail")
        # An empty version dir is logged as not yet complete by every poll, and is never loaded:
        # its second line means a whole poll has run since version 2 failed.
        (base / "99").mkdir()
        server.wait_for_log(NOT_YET_COMPLETE.format(99), count=2)
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
        # Startup waits for a version of each model; the policy's others load after it.
        both = {2: ("AVAILABLE", "OK", ""), 3: ("AVAILABLE", "OK", "")}
        waiting.wait_for(lambda: states(server), until=lambda seen: seen == both,
                         timeout_seconds=60, message="every aspired version to load")
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
        waiting.wait_for(lambda: states(server).get(2, ("",))[0] == "AVAILABLE",
                         timeout_seconds=60, message="version 2")
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
