"""AspiredVersionsManager in process: a fake load function on a real thread pool, an injected
fingerprint and fake loop time (looptime), so retry intervals pass at once and a test can hold a
load mid-way and look at the states.

Fake loop time moves only when nothing can run: while a loader thread works, the loop waits for
it. So "an hour passes" (`asyncio.sleep(HOUR)`) means: every retry due in that hour has fired and
every load or unload that could finish has finished. No test lets time pass while a load is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fake_time import HOUR, quiesce, run

from berth_server import errors
from berth_server.core.aspired_versions_manager import AspiredVersionsManager
from berth_server.core.servable_state import ServableId, State

RETRY_SECONDS = 60.0
THREAD_WAIT_SECONDS = 30.0  # a held load that is never released fails instead of hanging


class FakeServable:
    def __init__(self, servable_id: ServableId) -> None:
        self.version = servable_id.version
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeLoader:
    """The load function. A version can fail its next loads, or wait until the test releases it.

    Called on the loader threads; the test reads what it recorded on the loop.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.attempts: list[tuple[str, int, float]] = []  # (model, version, loop time) per call
        self.made: list[FakeServable] = []
        self._failures: dict[int, list[Exception]] = {}
        self._gates: dict[int, threading.Event] = {}
        self._made_one = threading.Condition()

    def fail(self, version: int, times: int = 1, error: Exception | None = None) -> None:
        self._failures[version] = [error or RuntimeError("boom")] * times

    def hold(self, version: int) -> None:
        self._gates[version] = threading.Event()

    def release(self, version: int) -> None:
        self._gates.pop(version).set()

    def release_all(self) -> None:
        for version in list(self._gates):
            self.release(version)

    def attempted(self, version: int) -> list[float]:
        return [at for _, v, at in self.attempts if v == version]

    def wait_made(self, version: int) -> None:
        """On a thread: wait until a load of `version` has returned its servable."""
        with self._made_one:
            assert self._made_one.wait_for(lambda: any(s.version == version for s in self.made),
                                           THREAD_WAIT_SECONDS)

    def __call__(self, servable_id: ServableId) -> FakeServable:
        self.attempts.append((servable_id.name, servable_id.version, self._clock()))
        gate = self._gates.get(servable_id.version)
        if gate is not None and not gate.wait(THREAD_WAIT_SECONDS):
            raise AssertionError(f"version {servable_id.version} was held and never released")
        failures = self._failures.get(servable_id.version)
        if failures:
            raise failures.pop(0)
        servable = FakeServable(servable_id)
        with self._made_one:
            self.made.append(servable)
            self._made_one.notify_all()
        return servable


class Events:
    """The on_change hook: every (model, version, state) in order, and what was AVAILABLE then."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, State]] = []
        self.available_after: list[list[int]] = []
        self.manager: AspiredVersionsManager[FakeServable] | None = None
        self._news = asyncio.Event()

    def __call__(self, servable_id: ServableId, state: State) -> None:
        self.seen.append((servable_id.name, servable_id.version, state))
        assert self.manager is not None
        self.available_after.append(self.manager.available_versions(servable_id.name))
        self._news.set()

    def states(self, name: str, version: int) -> list[State]:
        return [s for n, v, s in self.seen if (n, v) == (name, version)]

    async def reached(self, name: str, version: int, state: State, *, times: int = 1) -> None:
        while self.seen.count((name, version, state)) < times:
            self._news.clear()
            await self._news.wait()


@dataclasses.dataclass
class World:
    manager: AspiredVersionsManager[FakeServable]
    loader: FakeLoader
    events: Events
    fingerprints: dict[Path, object]
    executor: ThreadPoolExecutor


@contextlib.asynccontextmanager
async def world(*, max_load_retries: int = 0) -> AsyncIterator[World]:
    loader = FakeLoader(asyncio.get_running_loop().time)
    events = Events()
    fingerprints: dict[Path, object] = {}
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-load")
    manager: AspiredVersionsManager[FakeServable] = AspiredVersionsManager(
        loader, executor, max_load_retries=max_load_retries,
        load_retry_interval_seconds=RETRY_SECONDS,
        fingerprint=lambda path: fingerprints.get(path, "as first written"), on_change=events)
    events.manager = manager
    try:
        yield World(manager, loader, events, fingerprints, executor)
    finally:
        loader.release_all()
        await manager.close()
        await quiesce()
        await asyncio.to_thread(executor.shutdown)


def paths(*versions: int) -> dict[int, Path]:
    return {v: Path(f"/models/m/{v}") for v in versions}


def served(w: World, name: str = "m") -> int:
    with w.manager.lease(name) as lease:
        return lease.version


# -- loading order ------------------------------------------------------------------------------


@pytest.mark.parametrize("aspired, order", [
    ((1, 2, 3), [3, 2, 1]),
    ((3, 1, 2), [3, 2, 1]),
    ((10, 9, 100), [100, 10, 9]),
    ((7,), [7]),
])
def test_aspired_versions_load_highest_first(aspired: tuple[int, ...], order: list[int]) -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(*aspired))
            assert await w.manager.wait_settled(["m"], every_version=True) == {}
            assert [v for _, v, _ in w.loader.attempts] == order
            assert w.manager.available_versions("m") == sorted(order)
            assert served(w) == order[0]

    run(main)


def test_versions_aspired_during_a_load_are_loaded_after_it_highest_first() -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.hold(1)
            w.manager.set_aspired_versions("m", paths(1))
            await w.events.reached("m", 1, State.LOADING)
            w.manager.set_aspired_versions("m", paths(1, 2, 3))
            w.loader.release(1)
            assert await w.manager.wait_settled(["m"], every_version=True) == {}
            assert [v for _, v, _ in w.loader.attempts] == [1, 3, 2]

    run(main)


def test_models_load_independently_of_each_other() -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.hold(1)
            w.manager.set_aspired_versions("held", {1: Path("/models/held/1")})
            w.manager.set_aspired_versions("free", {2: Path("/models/free/2")})
            assert await w.manager.wait_settled(["free"]) == {}
            assert w.manager.statuses("held")[0].state == State.LOADING
            w.loader.release(1)
            assert await w.manager.wait_settled(["held"]) == {}

    run(main)


# -- availability-preserving swaps --------------------------------------------------------------


@pytest.mark.parametrize("before, after", [
    ((1,), (2,)),  # a new version replaces the old one
    ((2,), (1,)),  # a rollback to a lower version
    ((1, 2), (3, 4)),  # several at once
    ((1, 2), (2, 3)),  # one kept, one replaced
])
def test_a_swap_unloads_old_versions_only_once_a_new_one_is_available(
        before: tuple[int, ...], after: tuple[int, ...]) -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(*before))
            await w.manager.wait_settled(["m"], every_version=True)
            first_new_event = len(w.events.seen)
            w.manager.set_aspired_versions("m", paths(*after))
            await w.manager.wait_settled(["m"], every_version=True)
            await quiesce()

            swap = w.events.seen[first_new_event:]
            available = w.events.available_after[first_new_event:]
            unloaded = [v for _, v, s in swap if s == State.UNLOADING]
            assert sorted(unloaded) == sorted(set(before) - set(after))
            assert all(set(now) & set(after) for now, (_, _, s) in zip(available, swap, strict=True)
                       if s == State.UNLOADING)  # an aspired version was serving at each unload
            assert all(available)  # never zero AVAILABLE versions
            assert w.manager.available_versions("m") == sorted(after)
            assert {s.version: s.closed for s in w.loader.made} == {
                v: v not in after for v in {*before, *after}}

    run(main)


def test_a_new_version_that_fails_to_load_leaves_the_old_one_serving() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            w.loader.fail(2, times=1, error=errors.invalid_argument("bad graph"))
            w.manager.set_aspired_versions("m", paths(2))
            await w.events.reached("m", 2, State.END)
            await asyncio.sleep(HOUR)

            assert w.manager.available_versions("m") == [1]
            assert served(w) == 1
            assert w.events.states("m", 1) == [State.START, State.LOADING, State.AVAILABLE]
            status = {s.version: s for s in w.manager.statuses("m")}
            assert status[2].state == State.END
            assert status[2].error is not None and status[2].error.message == "bad graph"

    run(main)


# -- leases -------------------------------------------------------------------------------------


def test_a_leased_version_stays_unloading_until_its_lease_is_released() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            with w.manager.lease("m") as lease:
                w.manager.set_aspired_versions("m", paths(2))
                await w.events.reached("m", 1, State.UNLOADING)
                await asyncio.sleep(HOUR)

                assert [(s.version, s.state) for s in w.manager.statuses("m")] == [
                    (1, State.UNLOADING), (2, State.AVAILABLE)]
                assert not lease.servable.closed
                assert served(w) == 2  # new requests get the new version meanwhile
                with pytest.raises(errors.ServingError), w.manager.lease("m", 1):
                    pass
            await w.events.reached("m", 1, State.END)

            assert lease.servable.closed
            assert [(s.version, s.state) for s in w.manager.statuses("m")] == [
                (1, State.END), (2, State.AVAILABLE)]

    run(main)


def test_an_unload_waits_for_every_lease_on_the_version() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            first = w.manager.lease("m")
            second = w.manager.lease("m")
            servable = first.__enter__().servable
            second.__enter__()
            w.manager.set_aspired_versions("m", paths(2))
            await w.events.reached("m", 1, State.UNLOADING)
            first.__exit__(None, None, None)
            await asyncio.sleep(HOUR)
            assert not servable.closed and w.manager.statuses("m")[0].state == State.UNLOADING
            second.__exit__(None, None, None)
            await w.events.reached("m", 1, State.END)
            assert servable.closed

    run(main)


@pytest.mark.parametrize("version, message", [
    (None, "Servable not found for request: Latest(ghost)"),
    (3, "Servable not found for request: Specific(ghost, 3)"),
])
def test_leasing_a_model_that_is_not_there_is_not_found(version: int | None, message: str) -> None:
    async def main() -> None:
        async with world() as w:
            with pytest.raises(errors.ServingError) as raised, w.manager.lease("ghost", version):
                pass
            assert (raised.value.code, raised.value.message) == (errors.Code.NOT_FOUND, message)

    run(main)


@pytest.mark.parametrize("version, message", [
    (3, "Servable not found for request: Specific(m, 3)"),  # never aspired
    (2, "Servable not found for request: Specific(m, 2)"),  # failed to load
    (1, "Servable not found for request: Specific(m, 1)"),  # still loading
])
def test_leasing_a_version_that_is_not_available_is_not_found(version: int, message: str) -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.fail(2)
            w.loader.hold(1)
            w.manager.set_aspired_versions("m", paths(1, 2))
            await w.events.reached("m", 1, State.LOADING)
            with pytest.raises(errors.ServingError) as raised, w.manager.lease("m", version):
                pass
            assert (raised.value.code, raised.value.message) == (errors.Code.NOT_FOUND, message)
            with pytest.raises(errors.ServingError) as latest, w.manager.lease("m"):
                pass
            assert latest.value.message == "Servable not found for request: Latest(m)"

    run(main)


def test_a_lease_without_a_version_holds_the_latest_available_one() -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.fail(3)
            w.manager.set_aspired_versions("m", paths(1, 2, 3))
            await w.manager.wait_settled(["m"], every_version=True)
            with w.manager.lease("m") as latest, w.manager.lease("m", 1) as specific:
                assert (latest.name, latest.version, latest.servable.version) == ("m", 2, 2)
                assert (specific.version, specific.servable.version) == (1, 1)

    run(main)


# -- failed loads and retries -------------------------------------------------------------------


@pytest.mark.parametrize("failures, max_load_retries, attempts_at, state", [
    (1, 0, [0.0], State.END),
    (1, 1, [0.0, 60.0], State.AVAILABLE),
    (3, 2, [0.0, 60.0, 120.0], State.END),
    (2, 5, [0.0, 60.0, 120.0], State.AVAILABLE),
    (1, -1, [0.0], State.END),  # a negative count means no retries
])
def test_a_failed_load_is_retried_at_the_retry_interval(
        failures: int, max_load_retries: int, attempts_at: list[float], state: State) -> None:
    async def main() -> None:
        async with world(max_load_retries=max_load_retries) as w:
            w.loader.fail(1, times=failures)
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            await asyncio.sleep(HOUR)

            assert w.loader.attempted(1) == attempts_at
            [status] = w.manager.statuses("m")
            assert status.state == state
            if state == State.END:
                assert status.error is not None and status.error.message == "boom"
                assert w.events.states("m", 1) == [State.START, State.LOADING, State.END]
            else:
                assert status.error is None  # a success clears the earlier attempts' error

    run(main)


class OpError(Exception):
    """Shaped like tf.errors.OpError: a canonical `error_code` and a `message`."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@pytest.mark.parametrize("error, code, message", [
    (errors.ServingError(errors.Code.NOT_FOUND, "no graph"), errors.Code.NOT_FOUND, "no graph"),
    (RuntimeError("boom"), errors.Code.UNKNOWN, "boom"),
    (ValueError(), errors.Code.UNKNOWN, "ValueError"),
    (OpError(3, "bad node"), errors.Code.INVALID_ARGUMENT, "bad node"),
    (OpError(99, "odd code"), errors.Code.UNKNOWN, "odd code"),
])
def test_the_load_error_is_kept_in_the_status(error: Exception, code: errors.Code,
                                              message: str) -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.fail(1, error=error)
            w.manager.set_aspired_versions("m", paths(1))
            failed = await w.manager.wait_settled(["m"])

            [status] = w.manager.statuses("m")
            assert status.error is not None
            assert (status.state, status.error.code, status.error.message) == (
                State.END, code, message)
            assert (failed["m"].code, failed["m"].message) == (code, message)

    run(main)


@pytest.mark.parametrize("rewritten, loaded_again", [(True, True), (False, False)])
def test_a_failed_version_is_loaded_again_only_once_its_files_change(
        rewritten: bool, loaded_again: bool) -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.fail(1)
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            if rewritten:
                w.fingerprints[paths(1)[1]] = "rewritten"
            w.manager.set_aspired_versions("m", paths(1))  # the next poll lists it again
            await asyncio.sleep(HOUR)

            assert len(w.loader.attempted(1)) == (2 if loaded_again else 1)
            [status] = w.manager.statuses("m")
            assert status.state == (State.AVAILABLE if loaded_again else State.END)

    run(main)


# -- un-aspiring --------------------------------------------------------------------------------


@pytest.mark.parametrize("ended_by", ["unloaded", "cancelled"])
def test_a_version_unaspired_and_aspired_again_later_is_loaded_afresh(ended_by: str) -> None:
    async def main() -> None:
        async with world(max_load_retries=1) as w:
            if ended_by == "unloaded":
                w.manager.set_aspired_versions("m", paths(1))
                await w.manager.wait_settled(["m"])
            else:
                w.loader.fail(1)
                w.loader.hold(1)
                w.manager.set_aspired_versions("m", paths(1))
                await w.events.reached("m", 1, State.LOADING)
                w.manager.set_aspired_versions("m", {})
                w.loader.release(1)
            w.manager.set_aspired_versions("m", paths(2))
            await w.manager.wait_settled(["m"])
            await quiesce()
            assert w.manager.statuses("m")[0].state == State.END

            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"], every_version=True)
            await quiesce()
            assert [(s.version, s.state) for s in w.manager.statuses("m")] == [
                (1, State.AVAILABLE), (2, State.END)]
            assert len(w.loader.attempted(1)) == 2
            with w.manager.lease("m") as lease:
                assert lease.version == 1 and not lease.servable.closed

    run(main)


@pytest.mark.parametrize("first_attempt_fails, states, code", [
    (True, [State.START, State.LOADING, State.END], errors.Code.CANCELLED),
    (False, [State.START, State.LOADING, State.AVAILABLE, State.UNLOADING, State.END], None),
])
def test_unaspiring_a_version_while_it_loads_stops_its_retries_or_unloads_it(
        first_attempt_fails: bool, states: list[State], code: errors.Code | None) -> None:
    async def main() -> None:
        async with world(max_load_retries=3) as w:
            if first_attempt_fails:
                w.loader.fail(1, times=10)
            w.loader.hold(1)
            w.manager.set_aspired_versions("m", paths(1))
            await w.events.reached("m", 1, State.LOADING)
            w.manager.set_aspired_versions("m", {})
            w.loader.release(1)
            await w.events.reached("m", 1, State.END)
            await quiesce()

            assert len(w.loader.attempted(1)) == 1  # no retry after it was un-aspired
            assert w.events.states("m", 1) == states
            [status] = w.manager.statuses("m")
            assert (status.error.code if status.error else None) == code
            if status.error:
                assert status.error.message == "Version was un-aspired while loading"
            assert all(s.closed for s in w.loader.made)

    run(main)


def test_forgetting_a_model_unloads_all_its_versions() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1, 2))
            await w.manager.wait_settled(["m"], every_version=True)
            w.manager.forget_model("m")
            w.manager.forget_model("never-seen")  # nothing to do
            await quiesce()
            assert [(s.version, s.state) for s in w.manager.statuses("m")] == [
                (1, State.END), (2, State.END)]
            assert all(s.closed for s in w.loader.made)
            assert w.manager.statuses("never-seen") == []

    run(main)


def test_a_version_aspired_again_while_it_unloads_is_loaded_again_once_unloaded() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            with w.manager.lease("m"):
                w.manager.set_aspired_versions("m", paths(2))
                await w.events.reached("m", 1, State.UNLOADING)
                w.manager.set_aspired_versions("m", paths(1, 2))  # rolled back mid-unload
            await quiesce()
            assert w.manager.available_versions("m") == [1, 2]

    run(main)


# -- waiting ------------------------------------------------------------------------------------


def test_wait_settled_returns_the_models_that_did_not_become_available() -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.fail(1, error=errors.not_found("missing saved_model.pb"))
            w.manager.set_aspired_versions("bad", {1: Path("/models/bad/1")})
            w.manager.set_aspired_versions("good", {2: Path("/models/good/2")})
            failed = await w.manager.wait_settled(["bad", "good"])
            assert {name: (e.code, e.message) for name, e in failed.items()} == {
                "bad": (errors.Code.NOT_FOUND, "missing saved_model.pb")}

    run(main)


def test_wait_settled_for_every_version_waits_for_lower_versions_too() -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.hold(1)
            w.manager.set_aspired_versions("m", paths(1, 2))
            assert await w.manager.wait_settled(["m"]) == {}  # 2 is AVAILABLE: enough
            assert w.manager.statuses("m")[0].state == State.LOADING

            every = asyncio.ensure_future(w.manager.wait_settled(["m"], every_version=True))
            available_when_settled: list[list[int]] = []
            every.add_done_callback(
                lambda _: available_when_settled.append(w.manager.available_versions("m")))
            w.loader.release(1)
            assert await every == {}
            assert available_when_settled == [[1, 2]]  # it returned only once 1 had loaded

    run(main)


@pytest.mark.parametrize("aspired", [None, {}])
def test_a_model_with_nothing_aspired_never_settles(aspired: dict[int, Path] | None) -> None:
    async def main() -> None:
        async with world() as w:
            if aspired is not None:
                w.manager.set_aspired_versions("m", aspired)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(w.manager.wait_settled(["m"]), HOUR)

    run(main)


# -- life cycle events --------------------------------------------------------------------------


def test_the_state_hook_sees_a_versions_life_in_order() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            w.manager.set_aspired_versions("m", paths(2))
            await w.events.reached("m", 1, State.END)
            assert w.events.states("m", 1) == [
                State.START, State.LOADING, State.AVAILABLE, State.UNLOADING, State.END]
            assert w.events.states("m", 2) == [State.START, State.LOADING, State.AVAILABLE]

    run(main)


# -- shutdown -----------------------------------------------------------------------------------


def test_close_unloads_every_version_of_every_model() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("a", {1: Path("/models/a/1"), 2: Path("/models/a/2")})
            w.manager.set_aspired_versions("b", {5: Path("/models/b/5")})
            await w.manager.wait_settled(["a", "b"], every_version=True)
            await w.manager.close()

            last_states = {(n, v): s for n, v, s in w.events.seen}
            assert set(last_states.values()) == {State.END}
            assert len(w.loader.made) == 3 and all(s.closed for s in w.loader.made)
            with pytest.raises(errors.ServingError), w.manager.lease("a"):
                pass

    run(main)


def test_close_lets_a_leased_version_finish_before_unloading_it() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            lease = w.manager.lease("m")
            servable = lease.__enter__().servable
            closing = asyncio.ensure_future(w.manager.close())
            await w.events.reached("m", 1, State.UNLOADING)
            await asyncio.sleep(HOUR)
            assert not closing.done() and not servable.closed
            lease.__exit__(None, None, None)
            await closing
            assert servable.closed and w.manager.statuses("m")[0].state == State.END

    run(main)


def test_close_waits_for_a_version_that_was_already_unloading() -> None:
    async def main() -> None:
        async with world() as w:
            w.manager.set_aspired_versions("m", paths(1))
            await w.manager.wait_settled(["m"])
            with w.manager.lease("m"):
                w.manager.set_aspired_versions("m", paths(2))
                await w.events.reached("m", 1, State.UNLOADING)
                with pytest.raises(TimeoutError):  # it waits for the lease, as for version 2's
                    await asyncio.wait_for(w.manager.close(), HOUR)

    run(main)


def test_a_version_still_loading_at_close_is_closed_once_its_load_returns() -> None:
    async def main() -> None:
        async with world() as w:
            w.loader.hold(1)
            w.manager.set_aspired_versions("m", paths(1))
            await w.events.reached("m", 1, State.LOADING)
            closing = asyncio.ensure_future(w.manager.close())
            w.loader.release(1)
            await closing
            await asyncio.to_thread(w.loader.wait_made, 1)
            await quiesce()
            assert [s.closed for s in w.loader.made] == [True]
            assert w.manager.statuses("m")[0].state == State.END

    run(main)
