"""ServerCore in process over a real manager: version directories made in tmp_path, a fake load
function on a real thread pool, ModelServerConfig protos, and fake loop time (looptime).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fake_time import HOUR, quiesce, run, until
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from berth_server import errors
from berth_server.core.aspired_versions_manager import AspiredVersionsManager
from berth_server.core.servable_state import ServableId, State
from berth_server.core.server_core import ServerCore


class FakeServable:
    def __init__(self, servable_id: ServableId) -> None:
        self.id = servable_id
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeLoader:
    """Loads anything, except the version directories named in `failing`."""

    def __init__(self) -> None:
        self.loaded: list[ServableId] = []
        self.made: list[FakeServable] = []
        self.failing: set[Path] = set()

    def __call__(self, servable_id: ServableId) -> FakeServable:
        self.loaded.append(servable_id)
        if servable_id.path in self.failing:
            raise errors.not_found(f"cannot load {servable_id.path}")
        servable = FakeServable(servable_id)
        self.made.append(servable)
        return servable


class Seen:
    """The on_change hook: the loop time at which each version reached each state."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int, State], float] = {}
        self._news = asyncio.Event()

    def __call__(self, servable_id: ServableId, state: State) -> None:
        key = (servable_id.name, servable_id.version, state)
        self.at[key] = asyncio.get_running_loop().time()
        self._news.set()

    async def reached(self, name: str, version: int, state: State) -> float:
        while (name, version, state) not in self.at:
            self._news.clear()
            await self._news.wait()
        return self.at[name, version, state]


@dataclasses.dataclass
class World:
    core: ServerCore
    manager: AspiredVersionsManager[FakeServable]
    loader: FakeLoader
    seen: Seen


@contextlib.asynccontextmanager
async def world(*, allow_unavailable_labels: bool = False,
                poll_seconds: float = 0) -> AsyncIterator[World]:
    loader = FakeLoader()
    seen = Seen()
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-load")
    manager: AspiredVersionsManager[FakeServable] = AspiredVersionsManager(
        loader, executor, max_load_retries=0, load_retry_interval_seconds=0, on_change=seen)
    core = ServerCore(manager, file_system_poll_wait_seconds=poll_seconds,
                      allow_version_labels_for_unavailable_models=allow_unavailable_labels)
    try:
        yield World(core, manager, loader, seen)
    finally:
        await manager.close()
        await quiesce()
        await asyncio.to_thread(executor.shutdown)


def write_version(base: Path, version: int | str, files: dict[str, bytes] | None = None) -> Path:
    """A version directory; by default a complete SavedModel without variables."""
    directory = base / str(version)
    for name, content in (files if files is not None else {"saved_model.pb": b"graph"}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def model(name: str, base_path: Path | str, *, policy: str = "",
          labels: dict[str, int] | None = None) -> model_server_config_pb2.ModelConfig:
    """A model entry; `policy` is the text of model_version_policy (empty: the default)."""
    config = model_server_config_pb2.ModelConfig(name=name, base_path=str(base_path),
                                                 model_platform="tensorflow")
    text_format.Parse(policy, config.model_version_policy)
    config.version_labels.update(labels or {})
    return config


def config(*models: model_server_config_pb2.ModelConfig,
           ) -> model_server_config_pb2.ModelServerConfig:
    result = model_server_config_pb2.ModelServerConfig()
    result.model_config_list.config.extend(models)
    return result


def states(w: World, name: str) -> list[tuple[int, State]]:
    return [(s.version, s.state) for s in w.manager.statuses(name)]


# -- version policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy, served", [
    ("", [3]),
    ("latest { num_versions: 2 }", [2, 3]),
    ("latest { num_versions: 0 }", [3]),
    ("latest { num_versions: 9 }", [1, 2, 3]),
    ("all {}", [1, 2, 3]),
    ("specific { versions: [1, 3] }", [1, 3]),
    ("specific { versions: [2, 9] }", [2]),  # 9 is not on disk
])
def test_the_version_policy_chooses_the_versions_served(tmp_path: Path, policy: str,
                                                        served: list[int]) -> None:
    for version in (1, 2, 3):
        write_version(tmp_path, version)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("m", tmp_path, policy=policy)))
            await quiesce()
            assert w.manager.available_versions("m") == served
            assert [s.version for s in w.loader.loaded] == sorted(served, reverse=True)
            assert w.core.is_ready()

    run(main)


@pytest.mark.parametrize("files, complete", [
    ({"saved_model.pb": b"graph"}, True),
    ({"saved_model.pbtxt": b"graph"}, True),
    ({}, False),
    ({"saved_model.pb": b""}, False),  # created, not written yet
    ({"saved_model.pb": b"graph", "variables/variables.index": b"i"}, False),
    ({"saved_model.pb": b"graph", "variables/variables.data-00000-of-00001": b"d"}, False),
    ({"saved_model.pb": b"graph", "variables/variables.index": b"i",
      "variables/variables.data-00000-of-00002": b"d"}, False),
    ({"saved_model.pb": b"graph", "variables/variables.index": b"i",
      "variables/variables.data-00000-of-00002": b"d",
      "variables/variables.data-00001-of-00002": b"d"}, True),
])
def test_a_poll_picks_up_a_new_version_once_it_is_completely_written(
        tmp_path: Path, files: dict[str, bytes], complete: bool) -> None:
    write_version(tmp_path, 1)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("m", tmp_path)))
            write_version(tmp_path, 2, files)
            await w.core.poll_once()
            await quiesce()
            assert states(w, "m") == ([(1, State.END), (2, State.AVAILABLE)] if complete
                                      else [(1, State.AVAILABLE)])

    run(main)


@pytest.mark.parametrize("name", ["tmp-2", "2.5", "v2"])
def test_a_poll_ignores_directories_that_are_not_version_numbers(tmp_path: Path,
                                                                 name: str) -> None:
    write_version(tmp_path, 1)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("m", tmp_path)))
            write_version(tmp_path, name)
            await w.core.poll_once()
            await quiesce()
            assert states(w, "m") == [(1, State.AVAILABLE)]

    run(main)


def test_polling_rescans_every_poll_interval(tmp_path: Path) -> None:
    write_version(tmp_path, 1)

    async def main() -> None:
        async with world(poll_seconds=30) as w:
            await w.core.reload(config(model("m", tmp_path)))
            polling = asyncio.ensure_future(w.core.poll_forever())
            try:
                write_version(tmp_path, 2)
                assert await w.seen.reached("m", 2, State.AVAILABLE) == 30.0
                write_version(tmp_path, 3)
                assert await w.seen.reached("m", 3, State.AVAILABLE) == 60.0
            finally:
                polling.cancel()

    run(main)


def test_polling_is_off_when_the_interval_is_zero() -> None:
    async def main() -> None:
        async with world(poll_seconds=0) as w:
            polling = asyncio.ensure_future(w.core.poll_forever())
            done, _ = await asyncio.wait({polling}, timeout=HOUR)
            assert done  # it returned at once, without polling

    run(main)


# -- labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version, label, resolved", [
    (None, None, None),  # the latest
    (3, None, 3),
    (None, "stable", 1),
    (None, "canary", 2),
])
def test_a_label_resolves_to_its_version(tmp_path: Path, version: int | None, label: str | None,
                                         resolved: int | None) -> None:
    for v in (1, 2, 3):
        write_version(tmp_path, v)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("m", tmp_path, policy="all {}",
                                             labels={"stable": 1, "canary": 2})))
            assert w.core.resolve_version("m", version, label) == resolved
            assert dict(w.core.labels("m")) == {"stable": 1, "canary": 2}

    run(main)


@pytest.mark.parametrize("name, label", [("m", "beta"), ("other", "stable")])
def test_an_unknown_label_is_an_invalid_argument(tmp_path: Path, name: str, label: str) -> None:
    write_version(tmp_path, 1)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("m", tmp_path, labels={"stable": 1})))
            with pytest.raises(errors.ServingError) as raised:
                w.core.resolve_version(name, None, label)
            assert (raised.value.code, raised.value.message) == (
                errors.Code.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}")

    run(main)


@pytest.mark.parametrize("allow, accepted", [(False, False), (True, True)])
def test_a_first_config_may_label_an_unavailable_version_only_when_allowed(
        tmp_path: Path, allow: bool, accepted: bool) -> None:
    write_version(tmp_path, 1)

    async def main() -> None:
        async with world(allow_unavailable_labels=allow) as w:
            reload = w.core.reload(config(model("m", tmp_path, labels={"next": 5})))
            if accepted:
                await reload
                assert w.core.resolve_version("m", None, "next") == 5
                return
            with pytest.raises(errors.ServingError) as raised:
                await reload
            assert (raised.value.code, raised.value.message) == (
                errors.Code.FAILED_PRECONDITION,
                "Request to assign label to version 5 of model m, which is not currently "
                "available for inference")
            assert dict(w.core.labels("m")) == {}

    run(main)


@pytest.mark.parametrize("labels, allow, accepted", [
    ({"stable": 2}, False, True),  # moved to another available version
    ({"stable": 1, "canary": 2}, False, True),
    ({}, False, True),  # labels removed
    ({"stable": 3}, False, False),  # 3 is not available
    ({"stable": 3}, True, False),  # an existing label never moves to an unavailable version
    ({"stable": 1, "canary": 3}, False, False),
    ({"stable": 1, "canary": 3}, True, True),  # a new label may, when allowed
])
def test_a_reload_refuses_labels_on_unavailable_versions_and_keeps_the_old_ones(
        tmp_path: Path, labels: dict[str, int], allow: bool, accepted: bool) -> None:
    for v in (1, 2):
        write_version(tmp_path, v)

    async def main() -> None:
        async with world(allow_unavailable_labels=allow) as w:
            await w.core.reload(config(model("m", tmp_path, policy="all {}",
                                             labels={"stable": 1})))
            reload = w.core.reload(config(model("m", tmp_path, policy="all {}", labels=labels)))
            if accepted:
                await reload
                assert dict(w.core.labels("m")) == labels
                return
            with pytest.raises(errors.ServingError) as raised:
                await reload
            assert raised.value.code == errors.Code.FAILED_PRECONDITION
            assert raised.value.message == (
                "Request to assign label to version 3 of model m, which is not currently "
                "available for inference")
            assert dict(w.core.labels("m")) == {"stable": 1}

    run(main)


@pytest.mark.parametrize("allow", [False, True])
def test_a_new_model_in_a_reload_may_label_its_versions_only_when_allowed(
        tmp_path: Path, allow: bool) -> None:
    # As TF Serving: after the first config, labels are checked before new models load.
    write_version(tmp_path / "a", 1)
    write_version(tmp_path / "b", 1)
    new_config = config(model("a", tmp_path / "a"),
                        model("b", tmp_path / "b", labels={"stable": 1}))

    async def main() -> None:
        async with world(allow_unavailable_labels=allow) as w:
            await w.core.reload(config(model("a", tmp_path / "a")))
            if allow:
                await w.core.reload(new_config)
                assert w.core.resolve_version("b", None, "stable") == 1
                assert w.manager.available_versions("b") == [1]
                return
            with pytest.raises(errors.ServingError) as raised:
                await w.core.reload(new_config)
            assert (raised.value.code, raised.value.message) == (
                errors.Code.FAILED_PRECONDITION,
                "Request to assign label to version 1 of model b, which is not currently "
                "available for inference")
            assert w.core.model_names == ["a"]

    run(main)


# -- reloading ----------------------------------------------------------------------------------


def test_a_reload_that_drops_a_model_unloads_it(tmp_path: Path) -> None:
    write_version(tmp_path / "a", 1)
    write_version(tmp_path / "b", 1)
    write_version(tmp_path / "b", 2)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("a", tmp_path / "a"),
                                       model("b", tmp_path / "b", policy="all {}",
                                             labels={"stable": 1})))
            await w.core.reload(config(model("a", tmp_path / "a")))
            await quiesce()

            assert w.core.model_names == ["a"]
            assert states(w, "b") == [(1, State.END), (2, State.END)]
            assert [s.closed for s in w.loader.made if s.id.name == "b"] == [True, True]
            assert dict(w.core.labels("b")) == {}
            with pytest.raises(errors.ServingError) as raised, w.manager.lease("b"):
                pass
            assert raised.value.code == errors.Code.NOT_FOUND
            assert states(w, "a") == [(1, State.AVAILABLE)] and w.core.is_ready()

    run(main)


def test_a_reload_adds_a_new_model_and_returns_once_it_is_available(tmp_path: Path) -> None:
    write_version(tmp_path / "a", 1)
    write_version(tmp_path / "b", 4)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("a", tmp_path / "a")))
            await w.core.reload(config(model("a", tmp_path / "a"), model("b", tmp_path / "b")))
            assert w.core.model_names == ["a", "b"]
            assert w.manager.available_versions("b") == [4]
            assert [s.name for s in w.loader.loaded] == ["a", "b"]  # a was not loaded again

    run(main)


@pytest.mark.parametrize("invalid, message", [
    (config(model("a", "/models/a"), model("a", "/models/a2")),
     "Illegal to list model a multiple times in config list"),
    (config(model("c", "relative/path")),
     "Expected model c to have an absolute path or URI; got base_path()=relative/path"),
    (config(model("", "/models/x")), "ModelConfig has no name"),
    (config(model_server_config_pb2.ModelConfig(name="c", base_path="/models/c",
                                                model_platform="pytorch")),
     "Model c has model_platform 'pytorch'; only 'tensorflow' is supported"),
    (model_server_config_pb2.ModelServerConfig(
        custom_model_config={"type_url": "type.googleapis.com/x"}),
     "ModelServerConfig must use model_config_list; custom_model_config is not supported"),
])
def test_an_invalid_reload_raises_and_keeps_the_running_config(
        tmp_path: Path, invalid: model_server_config_pb2.ModelServerConfig, message: str) -> None:
    write_version(tmp_path, 1)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("a", tmp_path, labels={"stable": 1})))
            with pytest.raises(errors.ServingError) as raised:
                await w.core.reload(invalid)
            assert (raised.value.code, raised.value.message) == (
                errors.Code.INVALID_ARGUMENT, message)
            await quiesce()
            assert w.core.model_names == ["a"]
            assert dict(w.core.labels("a")) == {"stable": 1}
            assert states(w, "a") == [(1, State.AVAILABLE)]
            assert len(w.loader.loaded) == 1

    run(main)


# -- readiness ----------------------------------------------------------------------------------


def test_a_reload_whose_new_model_fails_to_load_keeps_the_running_config(
        tmp_path: Path) -> None:
    write_version(tmp_path / "a", 1)
    bad = write_version(tmp_path / "b", 1)

    async def main() -> None:
        async with world() as w:
            w.loader.failing.add(bad)
            await w.core.reload(config(model("a", tmp_path / "a")))
            with pytest.raises(errors.ServingError) as raised:
                await w.core.reload(config(model("b", tmp_path / "b")))
            assert (raised.value.code, raised.value.message) == (
                errors.Code.UNKNOWN, f"1 model(s) did not become available: "
                                     f"{{b: cannot load {bad}}}")
            assert w.core.model_names == ["a"] and w.core.is_ready()
            assert w.manager.available_versions("a") == [1]
            assert ("a", 1, State.UNLOADING) not in w.seen.at

    run(main)


def test_a_reload_whose_new_base_path_cannot_be_listed_fails_at_once(tmp_path: Path) -> None:
    write_version(tmp_path / "a", 1)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("a", tmp_path / "a")))
            with pytest.raises(errors.ServingError) as raised:
                await w.core.reload(config(model("a", tmp_path / "a"),
                                           model("b", tmp_path / "nowhere")))
            assert raised.value.message == (
                f"1 model(s) did not become available: {{b: Could not find base path "
                f"{tmp_path / 'nowhere'} for servable}}")
            assert w.core.model_names == ["a"]

    run(main)


def test_a_reload_that_outlives_its_deadline_is_taken_back(tmp_path: Path) -> None:
    write_version(tmp_path / "a", 1)
    (tmp_path / "empty").mkdir()

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("a", tmp_path / "a")))
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError):
                await w.core.reload(config(model("b", tmp_path / "empty")), timeout_seconds=30)
            assert asyncio.get_running_loop().time() - started == pytest.approx(30, abs=1)
            assert w.core.model_names == ["a"] and w.manager.available_versions("a") == [1]
            await w.core.reload(config(model("a", tmp_path / "a")), timeout_seconds=30)

    run(main)


def test_models_that_leave_the_config_unload_only_once_the_new_ones_serve(
        tmp_path: Path) -> None:
    write_version(tmp_path / "a", 1)
    write_version(tmp_path / "b", 1)

    async def main() -> None:
        async with world() as w:
            await w.core.reload(config(model("a", tmp_path / "a")))
            await w.core.reload(config(model("b", tmp_path / "b")))
            await w.seen.reached("a", 1, State.END)
            assert w.seen.at["b", 1, State.AVAILABLE] <= w.seen.at["a", 1, State.UNLOADING]
            assert w.core.model_names == ["b"]

    run(main)


def test_a_model_is_ready_once_its_first_version_is_available(tmp_path: Path) -> None:
    write_version(tmp_path, 1)

    async def main() -> None:
        async with world() as w:
            reload = asyncio.ensure_future(w.core.reload(config(model("m", tmp_path))))
            await until(lambda: w.core.has_model("m"))  # configured, still loading
            assert not w.core.is_ready()
            await reload
            assert w.core.is_ready()

    run(main)
