"""The shared polling loop: what it returns, what its timeout says, when it gives up."""

from __future__ import annotations

import itertools

import pytest
import waiting


class FakeClock:
    """`time.monotonic` and `time.sleep` of the waiting module: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(waiting.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(waiting.time, "sleep", fake.sleep)
    return fake


def test_the_first_value_that_holds_is_returned(clock: FakeClock) -> None:
    counter = itertools.count()
    found = waiting.wait_for(
        lambda: next(counter), until=lambda n: n == 3, timeout_seconds=10, message="three"
    )
    assert (found, clock.now) == (3, pytest.approx(0.6))


def test_by_default_a_truthy_value_holds() -> None:
    assert waiting.wait_for(lambda: {"ready": True}, timeout_seconds=0, message="it") == {
        "ready": True
    }


def test_a_timeout_names_what_was_awaited_and_the_last_value_seen(clock: FakeClock) -> None:
    counter = itertools.count(40)
    with pytest.raises(waiting.TimedOut) as raised:
        waiting.wait_for(
            lambda: next(counter), until=lambda n: n < 0, timeout_seconds=1, message="the answer"
        )
    assert str(raised.value) == "timed out after 1s waiting for the answer; last seen: 46"
    assert isinstance(raised.value, AssertionError)


def test_the_condition_is_checked_once_more_after_the_deadline(clock: FakeClock) -> None:
    assert waiting.wait_for(
        lambda: clock.now > 1, timeout_seconds=1, interval_seconds=1, message="late"
    )


def test_an_exception_from_the_condition_propagates_at_once(clock: FakeClock) -> None:
    def broken() -> bool:
        raise ConnectionRefusedError("gone")

    with pytest.raises(ConnectionRefusedError):
        waiting.wait_for(broken, timeout_seconds=60, message="it")
    assert clock.now == 0


def test_a_long_last_value_is_cut_short(clock: FakeClock) -> None:
    with pytest.raises(waiting.TimedOut) as raised:
        waiting.wait_for(lambda: "x" * 2000, until=lambda s: False, timeout_seconds=0, message="it")
    assert str(raised.value).endswith("... (2002 characters)")
