"""Progress of a version's download in the log: bytes so far, MB/s and the time left.

Thread-safety: `add` is called by every download thread at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LARGE_BYTES = 64 * 2**20  # smaller downloads log their summary only


class DownloadProgress:
    def __init__(self, what: str, total_bytes: int, *, interval_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._total = total_bytes
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._done = 0
        self._started = self._last_log = clock()

    def add(self, count_bytes: int) -> None:
        with self._lock:
            self._done += count_bytes
            now = self._clock()
            if self._total < LARGE_BYTES or now - self._last_log < self._interval:
                return
            self._last_log = now
            rate = self._done / max(now - self._started, 1e-9)
            eta = (self._total - self._done) / rate if rate else float("inf")
            log.info("Downloading %s: %.0f of %.0f MB, %.1f MB/s, %.0f s left", self._what,
                     self._done / 1e6, self._total / 1e6, rate / 1e6, eta)

    def finish(self, reused_files: int, downloaded_files: int) -> None:
        seconds = max(self._clock() - self._started, 1e-9)
        log.info("Fetched %s: %d file(s), %.1f MB downloaded in %.1f s (%.1f MB/s), "
                 "%d file(s) reused from the cache", self._what, downloaded_files,
                 self._done / 1e6, seconds, self._done / 1e6 / seconds, reused_files)
