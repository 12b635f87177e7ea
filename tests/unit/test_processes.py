"""The shared process harness: logs, fail-fast readiness, stopping within a grace period."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import processes
import pytest
import waiting


def python(code: str, tmp_path: Path) -> processes.LoggedProcess:
    return processes.start(
        [sys.executable, "-c", code], name="child", log_path=tmp_path / "logs" / "child.log"
    )


def test_output_goes_to_the_log_and_its_tail_is_kept(tmp_path: Path) -> None:
    child = python("for i in range(200): print(i)", tmp_path)
    assert child.popen.wait(timeout=60) == 0
    assert child.log().splitlines() == [str(i) for i in range(200)]
    assert child.log_tail(3) == "197\n198\n199"


def test_waiting_on_a_process_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    child = python("print('cannot bind'); raise SystemExit(3)", tmp_path)
    with pytest.raises(AssertionError) as raised:
        child.wait_until(lambda: False, timeout_seconds=600, message="its port")
    assert "child exited with 3 while waiting for its port" in str(raised.value)
    assert "cannot bind" in str(raised.value)


def test_a_timeout_carries_the_log_tail(tmp_path: Path) -> None:
    child = python("print('still starting', flush=True); import time; time.sleep(600)", tmp_path)
    try:
        waiting.wait_for(lambda: "still" in child.log(), timeout_seconds=60, message="output")
        with pytest.raises(waiting.TimedOut) as raised:
            child.wait_until(lambda: False, timeout_seconds=0, message="its port")
        assert "child's log ends:\nstill starting" in str(raised.value)
    finally:
        child.stop(grace_seconds=30)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    child = python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)",
        tmp_path,
    )
    waiting.wait_for(lambda: "ready" in child.log(), timeout_seconds=60, message="SIGTERM ignored")
    assert child.stop(grace_seconds=0.1) == -9
    assert child.stop(grace_seconds=0.1) == -9  # stopping again does nothing


def test_a_process_that_honours_sigterm_exits_by_itself(tmp_path: Path) -> None:
    child = python("import time; time.sleep(600)", tmp_path)
    assert child.stop(grace_seconds=60) == -15


def test_port_accepts_only_once_something_listens() -> None:
    port = processes.free_port()
    assert not processes.port_accepts(port)
    with socket.create_server(("127.0.0.1", port)):
        assert processes.port_accepts(port)
