"""Processes the tests run, each with its log: start one, wait until it is ready, stop it.

Every harness starts its processes here: the server (tests/server/conftest.py), the operator
(tests/k8s_operator/operator_harness.py, tests/deploy/helm_harness.py), the rendered server
containers (tests/contract/) and the control plane's components (tests/kube_control_plane.py).
So all of them behave alike:

* stdout and stderr are appended to a log file, never to a pipe (a full pipe stalls the child);
  stdin is /dev/null.
* `LoggedProcess.wait_until` polls a readiness condition and fails at once when the process
  exits first; that failure and a timeout both carry the tail of the log.
* `stop_all` and `LoggedProcess.stop` send SIGTERM, wait one grace period, then SIGKILL and reap
  what is left; stopping a stopped process does nothing.

Not thread-safe: one thread drives a process.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

try:
    import waiting
except ModuleNotFoundError:  # imported as `tests.processes` (python -m tests.kube_control_plane)
    from tests import waiting  # type: ignore[no-redef]

T = TypeVar("T")
LOG_TAIL_LINES = 80


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (the child binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def http_status(url: str, *, timeout_seconds: float = 10) -> int | None:
    """The HTTP status of a GET of `url` (error statuses too), or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


def get_json(url: str, *, timeout_seconds: float = 30) -> dict[str, Any]:
    """GET `url` and parse its JSON body; raises OSError when nothing answered."""
    with urllib.request.urlopen(url, timeout=timeout_seconds) as reply:
        document: dict[str, Any] = json.loads(reply.read())
        return document


def tail(path: Path, lines: int = LOG_TAIL_LINES, *, width: int = 400) -> str:
    """The last `lines` lines of a log, each cut at `width` characters ("" before it exists)."""
    if not path.exists():
        return ""
    kept = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(line[:width] for line in kept)


@dataclasses.dataclass
class LoggedProcess:
    """A started process and its log; `popen` is the plain `subprocess.Popen`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """The whole log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines)

    def wait_until(
        self,
        condition: Callable[[], T],
        *,
        timeout_seconds: float,
        interval_seconds: float = 0.2,
        message: str,
        until: Callable[[T], object] = bool,
    ) -> T:
        """`waiting.wait_for(condition, ...)`, failing at once if the process exits meanwhile."""

        def alive_and_ready() -> T:
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode} while waiting for "
                    f"{message}; its log ends:\n{self.log_tail()}"
                )
            return condition()

        try:
            return waiting.wait_for(
                alive_and_ready,
                timeout_seconds=timeout_seconds,
                interval_seconds=interval_seconds,
                message=message,
                until=until,
            )
        except waiting.TimedOut as error:
            raise waiting.TimedOut(f"{error}\n{self.name}'s log ends:\n{self.log_tail()}") from None

    def stop(self, *, grace_seconds: float) -> int:
        """SIGTERM, then SIGKILL after `grace_seconds`; returns the exit status."""
        stop_all([self.popen], grace_seconds=grace_seconds)
        return self.popen.returncode


def start(
    command: Sequence[str],
    *,
    name: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> LoggedProcess:
    """Start `command` with its output appended to `log_path`; `env` None inherits ours.

    `die_with_parent` asks Linux to SIGTERM the child when the thread that started it ends, so
    nothing outlives a crashed test run; start such children from the main thread.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            cwd=cwd,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    return LoggedProcess(name, popen, log_path)


def stop_all(popens: Sequence[subprocess.Popen[bytes]], *, grace_seconds: float) -> None:
    """SIGTERM every running process (in the given order), wait for all within one grace period,
    then SIGKILL and reap whatever is left."""
    for popen in popens:
        if popen.poll() is None:
            popen.terminate()
    deadline = time.monotonic() + grace_seconds
    for popen in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()  # loaded before any fork: importing or loading in the child can deadlock
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
