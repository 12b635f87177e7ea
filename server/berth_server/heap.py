"""Freed heap memory handed back to the system once the server goes quiet.

glibc's malloc keeps what a process frees for its next allocations, so the buffers a model's
restore used and every request's intermediate tensors (about 60 MiB for one MobileNetV2
request) stay in the resident memory that a pod's limit is measured against, long after they
were freed. `malloc_trim` hands them back. A thread of its own calls it at most once per
`interval`, only after requests ran or a version was loaded or unloaded, and only while no
request is in model execution: a busy server never pays to fault the same pages in again, and
an idle one pays nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0


class Activity(Protocol):
    """What the trimmer reads of the server: requests admitted so far, and those running."""

    admitted: int
    inflight: int


def glibc_trim() -> Callable[[], object] | None:
    """`malloc_trim(0)` of the C library, or None where it has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return None
    return lambda: trim(0)  # ctypes releases the GIL for the call


class Trimmer:
    def __init__(self, trim: Callable[[], object] | None, *,
                 interval_seconds: float = INTERVAL_SECONDS) -> None:
        self._trim = trim
        self._interval = interval_seconds
        self._changed = threading.Event()  # a version loaded or unloaded since the last trim
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trimmed_after = -1  # requests admitted when the last trim ran (-1: none yet)

    def note_change(self) -> None:
        """A version was loaded or unloaded: trim at the next quiet moment."""
        self._changed.set()

    def start(self, activity: Activity) -> None:
        if self._trim is None:
            log.info("No malloc_trim in this C library: freed memory stays with the process")
            return
        self._thread = threading.Thread(target=self._run, args=(activity,), daemon=True,
                                        name="berth-heap-trim")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, activity: Activity) -> None:
        while not self._stop.wait(self._interval):
            self.tick(activity)

    def tick(self, activity: Activity) -> bool:
        """One look (the thread's, once per interval): trim if something ran or changed since
        the last trim and nothing runs now. True when it trimmed."""
        admitted = activity.admitted
        if self._trim is None or activity.inflight or (
                admitted == self._trimmed_after and not self._changed.is_set()):
            return False
        self._changed.clear()
        self._trim()
        self._trimmed_after = admitted
        return True
