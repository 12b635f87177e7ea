"""Work on a large message runs in a worker thread, so the one event loop keeps serving.

Both ports share one event loop: parsing a 64 MB JSON body or converting millions of typed values
on it would stall every other client for as long. Above `OFFLOAD_BYTES` such work runs in a
thread instead; the loop then gets the interpreter back at least every switch interval (5 ms),
so other clients wait milliseconds, not seconds. Below it, the thread hop would cost more than
the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

OFFLOAD_BYTES = 1 << 20


async def run(work: Callable[[], T], *, size: int) -> T:
    """`work()`, in a worker thread when the message it handles has `size` bytes or more."""
    if size < OFFLOAD_BYTES:
        return work()
    return await asyncio.to_thread(work)
