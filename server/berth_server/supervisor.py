"""`--num_workers` above 1: worker processes serve the same ports, and this process watches them.

Each worker is a whole Berth server (`python -m berth_server` with the same flags): it loads
every model and serves gRPC and REST on the shared ports with SO_REUSEPORT, so the kernel
spreads new connections over the workers and no request passes through this process. What must
be one answer for the whole server (metrics, model status, readiness, config reloads) the
workers settle among themselves (`service.worker_view`). This process starts, signals and
watches them, and never imports TensorFlow:

* Startup: the ports open once every worker has loaded its models (`worker_link`). A worker
  that fails to start fails the server, with its own `Failed to start server` line.
* SIGTERM and SIGINT go to every worker, which drains as one server does; the exit status is 0
  when every worker exited 0.
* A worker that ends by itself (killed for memory, a crash) stops the others, which drain their
  in-flight requests, and the server exits 1, so the container restarts as it would had a
  one-process server died. Restarting the worker here would hide the failure from the
  orchestrator (no restart count, no back-off, no event) and serve meanwhile with fewer workers,
  then with one that loads the config of the command line, not the one reloads have set since.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from berth_server import errors, worker_link
from berth_server.observability import log_format
from berth_server.options import ServerOptions

log = logging.getLogger("berth_server.supervisor")


@dataclasses.dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def start(cls, argv: Sequence[str], index: int, count: int, run_dir: Path) -> _Worker:
        ours, theirs = socket.socketpair()
        identity = worker_link.WorkerIdentity(index, count, theirs.fileno(), run_dir)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "berth_server", *argv, stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env={**os.environ, worker_link.ENV: identity.to_env()})
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        log.info("Started worker %d (pid %d)", index, process.pid)
        return cls(index, process, reader, writer)

    def signal(self, sig: int) -> None:
        if self.process.returncode is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass  # it exited meanwhile

    async def exited(self) -> _Worker:
        await self.process.wait()
        return self

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"


def run(opts: ServerOptions, argv: Sequence[str], count: int) -> int:
    """Serve with `count` workers started with `argv` until SIGINT/SIGTERM; the exit status."""
    log_format.configure(opts.log_format)
    try:
        _check_ports_free(opts)
    except errors.ServingError as error:
        print(f"Failed to start server. Error: {error.code.name}: {error.message}", file=sys.stderr)
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix="berth-workers-"))
    try:
        return asyncio.run(_supervise(argv, count, run_dir))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def _supervise(argv: Sequence[str], count: int, run_dir: Path) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    workers: list[_Worker] = []

    def forward(sig: int) -> None:
        stopping.set()
        for worker in workers:
            worker.signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, forward, sig)
    for index in range(count):
        if not stopping.is_set():
            workers.append(await _Worker.start(argv, index, count, run_dir))
    if not workers:
        return 0
    exited = asyncio.ensure_future(_first_exit(workers))
    loaded = asyncio.ensure_future(_all_loaded(workers))
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait((exited, loaded, stopped), return_when=asyncio.FIRST_COMPLETED)
    if loaded.done() and loaded.result() and not stopping.is_set():
        for worker in workers:
            worker.writer.write(worker_link.SERVE)
        log.info("Every worker has loaded its models; the %d workers are serving", count)
    await asyncio.wait((exited, stopped), return_when=asyncio.FIRST_COMPLETED)
    loaded.cancel()
    stopped.cancel()
    failed = None if stopping.is_set() else exited.result()
    if failed is not None:
        log.error("Worker %d (pid %d) %s; stopping the other workers", failed.index,
                  failed.process.pid, failed.describe_exit())
        forward(signal.SIGTERM)
    await asyncio.gather(*(worker.process.wait() for worker in workers))
    exited.cancel()
    for worker in workers:
        worker.writer.close()
    return 1 if failed is not None or any(w.process.returncode for w in workers) else 0


async def _first_exit(workers: list[_Worker]) -> _Worker:
    done, _ = await asyncio.wait([asyncio.ensure_future(w.exited()) for w in workers],
                                 return_when=asyncio.FIRST_COMPLETED)
    return done.pop().result()


async def _all_loaded(workers: list[_Worker]) -> bool:
    lines = await asyncio.gather(*(worker.reader.readline() for worker in workers))
    return all(line == worker_link.LOADED for line in lines)


def _check_ports_free(opts: ServerOptions) -> None:
    """Refuse a port something already listens on: the workers bind theirs with SO_REUSEPORT,
    which would share it silently with another server started the same way."""
    for host, port in ((opts.bind_address or "::", opts.port),
                       (opts.bind_address or "0.0.0.0", opts.rest_api_port)):
        if not port:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        dualstack = host == "::" and socket.has_dualstack_ipv6()
        try:
            socket.create_server((host, port), family=family, dualstack_ipv6=dualstack).close()
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                continue  # no IPv6 here, say: the workers' own binds report what is wrong
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise errors.ServingError(errors.Code.UNAVAILABLE, f"Failed to bind to address "
                                      f"{shown}: {error.strerror}") from None
