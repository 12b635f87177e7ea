"""heap.Trimmer: freed memory goes back to the system only after work, and only when idle."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from berth_server import heap


@dataclasses.dataclass
class Server:
    admitted: int = 0
    inflight: int = 0


def counting_trimmer() -> tuple[heap.Trimmer, list[int]]:
    calls: list[int] = []
    return heap.Trimmer(lambda: calls.append(1)), calls


def test_it_trims_once_at_start_then_only_after_requests_ran() -> None:
    trimmer, calls = counting_trimmer()
    server = Server()
    assert trimmer.tick(server)  # what the start-up loads freed
    assert not trimmer.tick(server)
    server.admitted += 3
    assert trimmer.tick(server)
    assert not trimmer.tick(server)
    assert len(calls) == 2


def test_it_never_trims_while_a_request_runs() -> None:
    trimmer, calls = counting_trimmer()
    server = Server(admitted=5, inflight=2)
    assert not trimmer.tick(server)
    server.admitted, server.inflight = 9, 1
    assert not trimmer.tick(server)
    server.inflight = 0
    assert trimmer.tick(server)
    assert calls == [1]


def test_a_load_or_unload_is_trimmed_after_even_without_requests() -> None:
    trimmer, calls = counting_trimmer()
    server = Server()
    trimmer.tick(server)
    trimmer.note_change()
    assert trimmer.tick(server)
    assert not trimmer.tick(server)
    assert len(calls) == 2


def test_without_malloc_trim_it_does_nothing() -> None:
    trimmer = heap.Trimmer(None)
    trimmer.start(Server())
    assert not trimmer.tick(Server(admitted=1))
    trimmer.close()


@pytest.mark.skipif(heap.glibc_trim() is None, reason="a C library without malloc_trim")
def test_glibc_trim_returns_freed_heap_memory_to_the_system() -> None:
    # 1 KiB blocks come from malloc's heap (not mmap); the one kept alive at the end stops
    # free() from shrinking the heap by itself, so only malloc_trim can return the rest.
    script = textwrap.dedent("""
        from berth_server import heap

        def rss_mib():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024

        blocks = [bytes(1024) for _ in range(200_000)]
        kept = bytes(1024)
        del blocks
        before = rss_mib()
        heap.glibc_trim()()
        print(before, rss_mib())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    before, after = map(int, done.stdout.split())
    assert before - after >= 100, (before, after)
