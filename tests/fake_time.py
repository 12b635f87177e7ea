"""Running an in-process asyncio test on looptime's fake clock.

Sleeps and timeouts of the code under test pass at once in loop time, while work on real
threads (the manager's loads) still takes real time; a test that waits for something that
never comes fails after `idle_timeout` real seconds instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import looptime

HOUR = 3600.0


async def until(condition: Callable[[], object], *, steps: int = 1000) -> None:
    """Let the loop run until `condition()` holds; fails after `steps` loop steps (no clock)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not true after {steps} loop steps")


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `test` on a fake-time loop; an error left in a background task fails it."""
    errors_left: list[dict[str, Any]] = []
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0, idle_timeout=10),
                        ) as runner:
        runner.get_loop().set_exception_handler(lambda _, context: errors_left.append(context))
        runner.run(test())
    assert not errors_left, errors_left


async def quiesce() -> None:
    """Wait until every other task (loads, retries, unloads) has finished."""
    while others := {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}:
        await asyncio.wait(others)
