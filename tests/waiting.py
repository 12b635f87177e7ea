"""Waiting for something to happen: the one polling loop every test and harness uses.

A test that waits polls a condition it can observe (a status, a log line, a metric, a counter)
until it holds, with a timeout generous enough for a loaded 2-core CI machine; it never sleeps
for a fixed time hoping something happened meanwhile. The timeout bounds a hang, it measures
nothing: speed belongs in `bench/`.

Imported as `waiting` (the tests folder is on `sys.path` through tests/conftest.py; `make
cluster` sets `PYTHONPATH=tests:tests/deploy`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TimedOut(AssertionError):
    """The condition did not hold in time; the message says what was awaited and what was seen.

    An AssertionError, so pytest reports it as a failed expectation, not as an error.
    """


def wait_for(
    condition: Callable[[], T],
    *,
    timeout_seconds: float,
    interval_seconds: float = 0.2,
    message: str,
    until: Callable[[T], object] = bool,
) -> T:
    """Call `condition` until `until(value)` holds (by default: the value is truthy); return it.

    `message` names what is awaited ("version 2 to answer"); on timeout it is raised as
    `TimedOut` with the last value seen, so `until` is how to keep that value telling:
    `wait_for(lambda: status(url), until=lambda s: s == 503, ...)` reports the status it saw.
    Exceptions from `condition` propagate at once, so a condition can fail fast (a process that
    exited will never become ready). The last call starts after the deadline, so a condition that
    holds just then is not missed by a sleep.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        expired = time.monotonic() > deadline
        value = condition()
        if until(value):
            return value
        if expired:
            raise TimedOut(
                f"timed out after {timeout_seconds:g}s waiting for {message}; "
                f"last seen: {_shown(value)}"
            )
        time.sleep(interval_seconds)


def _shown(value: object, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
