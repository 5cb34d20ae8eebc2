"""``relay serve --workers N`` (N > 1): a supervisor that binds once and forks N workers.

Why a supervisor of relay's own and not a process manager (gunicorn's aiohttp worker, ...): a
worker here is the whole media plane of its calls (ICE sockets bound per call, DTLS, the 20 ms
media clock, the encode thread) and a call must stay in the worker that answered its SDP, so the
workers need to see each other's load (``relay.node.state``, shared memory) and hand a call to a
sibling (``relay.node.handoff``); a pre-fork manager gives neither, and would add a dependency
whose own signal and reload semantics fight relay's drain. What is left is small:

- bind the HTTP port once (one listening socket shared by every worker: no ``SO_REUSEPORT``
  group whose queued connections are lost when a worker dies), migrate the database once, print
  the console link once;
- fork the workers (no event loop or thread runs in the supervisor, so forking is safe); each
  runs ``relay.cli.serve`` (handed in by the CLI) on the inherited socket with its own event loop, media clock, encode
  thread and slice of the ICE port range, and dies with the supervisor (``PR_SET_PDEATHSIG``);
- a worker that exits unexpectedly is restarted (backing off when it keeps crashing) and counted
  (``relay_worker_restarts_total``); one that fails while the node starts stops the node (exit 1);
- SIGTERM/SIGINT: the node is marked draining (``/readyz`` 503 from every worker), each worker
  gets SIGTERM and drains as one process would (no new calls, live calls finish up to
  ``shutdown_timeout_s``, usage written); the supervisor waits for them, then exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from relay.node.state import NodeState
from relay.settings import Settings

log = logging.getLogger("relay.server")

_PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 120.0


def bind(settings: Settings, origins: dict[str, str], workers: int) -> socket.socket:
    """The node's listening socket (``StartupError`` naming the setting when the port is taken)."""
    from relay.startup import StartupError

    try:
        sock = socket.create_server((settings.host, settings.port), family=_family(settings.host),
                                    backlog=128 * workers)
    except OSError as exc:
        chosen = origins.get("port", "")
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {reason}"
                           + (f" ({chosen})" if chosen else "")) from None
    sock.set_inheritable(True)
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def _prepare(settings: Settings, origins: dict[str, str]) -> Any:
    """Migrate the database once (not N times at once) and prepare the console link's key."""
    from relay.startup import StartupError
    from relay.store.db import Database, DatabaseError

    try:
        db = await Database.connect(settings.effective_database_url)
    except DatabaseError as exc:
        chosen = origins.get("database_url" if settings.database_url else "data_dir", "")
        raise StartupError(f"database {settings.database_display}: {exc}" + (f" ({chosen})" if chosen else "")) from None
    try:
        await db.migrate()
        if not settings.console_link:
            return None
        from relay.console_link import prepare

        try:
            return await prepare(db, settings.data_path)
        except (OSError, DatabaseError) as exc:
            log.error("console link: could not prepare the default workspace's key: %s", exc)
            return None
    finally:
        await db.close()


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker notices the supervisor's death on its own
        pass


class _WorkerTag(logging.Filter):
    """Every log line of a worker names it (``worker=<index>``)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self.index
        return True


def _worker_main(settings: Settings, sock: socket.socket, node: NodeState, index: int,
                 origins: dict[str, str], serve: Callable[..., Any]) -> None:
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    tag = _WorkerTag(index)
    for name in ("relay", "aiohttp.server", "aiohttp.web", ""):  # relay.log's handler is on "relay" (+ aiohttp's)
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(tag)
    from relay.settings import SettingsError
    from relay.startup import StartupError, event_loop_runner

    try:
        event_loop_runner()(serve(settings, origins=origins, sock=sock, worker=node.worker(index)))
    except (StartupError, SettingsError) as exc:
        print(f"relay: worker {index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


class Supervisor:
    def __init__(self, settings: Settings, workers: int, origins: dict[str, str], *,
                 serve: Callable[..., Any], print_link: Callable[..., None]) -> None:
        self.settings = settings
        self.serve = serve  # relay.cli.serve: a worker's whole server (the web layer stays out of relay.node)
        self.print_link = print_link  # relay.cli's console link printer
        self.workers = workers
        self.origins = origins
        self.stopping = False
        self.ctx = multiprocessing.get_context("fork")
        self.procs: list[Any] = [None] * workers
        self.crashes = [0] * workers  # consecutive quick deaths, for the back-off

    def _spawn(self, index: int) -> None:
        self.node.reset_row(index)
        proc = self.ctx.Process(target=_worker_main, name=f"relay-worker-{index}", daemon=False,
                                args=(self.worker_settings, self.sock, self.node, index, self.origins, self.serve))
        proc.start()
        proc.started_at = time.monotonic()
        self.procs[index] = proc
        log.info("worker %d started (pid %d)", index, proc.pid, extra={"event": "worker_started", "worker": index})

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        import dataclasses

        from relay.startup import StartupError

        # the ports the workers need were checked before anything was logged (relay.cli, check_node_ports)
        self.sock = bind(self.settings, self.origins, self.workers)
        link = asyncio.run(_prepare(self.settings, self.origins))
        run_dir = tempfile.mkdtemp(prefix="relay-node-")  # mode 0700: only relay's user reaches the workers
        self.node = NodeState.create(self.workers, run_dir)
        self.worker_settings = dataclasses.replace(self.settings, console_link=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            for index in range(self.workers):
                self._spawn(index)
            if not self._wait_ready():
                raise StartupError("a worker failed to start (its line above says why)")
            host, port = self.sock.getsockname()[:2]
            log.info("relay listening on http://%s:%s with %d workers", host, port, self.workers,
                     extra={"event": "listening", "workers": self.workers})
            if link is not None:
                self.print_link(self.settings, link, host, port)
            self._supervise()
            return 0
        finally:
            self._stop_all()
            self.sock.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            log.info("stopped")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not self.stopping:
            if any(not p.is_alive() for p in self.procs):
                return False
            if all(r.ready for r in self.node.rows()):
                return True
            time.sleep(0.05)
        return self.stopping

    def _supervise(self) -> None:
        restart_at: dict[int, float] = {}
        while not self.stopping:
            wait([p.sentinel for p in self.procs if p is not None], timeout=0.5)
            if self.stopping:  # the signal may reach the workers too (a terminal's Ctrl-C, a process group)
                break
            now = time.monotonic()
            for index, proc in enumerate(self.procs):
                if proc is not None and not proc.is_alive():
                    proc.join()
                    quick = now - proc.started_at < 10.0
                    self.crashes[index] = self.crashes[index] + 1 if quick else 1
                    delay = min(10.0, 0.25 * 2 ** (self.crashes[index] - 1))
                    log.error("worker %d (pid %d) exited with code %s; restarting in %.2f s", index, proc.pid,
                              proc.exitcode, delay, extra={"event": "worker_exited", "worker": index})
                    self.node.reset_row(index)
                    self.procs[index] = None
                    restart_at[index] = now + delay
            for index, when in list(restart_at.items()):
                if now >= when and not self.stopping:
                    del restart_at[index]
                    self.node.count_restart()
                    self._spawn(index)
            if restart_at:
                time.sleep(0.05)

    def _stop_all(self) -> None:
        self.node.set_draining()
        self.sock.close()  # with the workers' copies closed as they drain, new connections are refused
        live = [p for p in self.procs if p is not None and p.is_alive()]
        if live:
            log.info("shutting down %d worker(s) (drain up to %.0f s)", len(live), self.settings.shutdown_timeout_s)
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout_s + 15.0
        for proc in live:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join()


def run(settings: Settings, workers: int, origins: dict[str, str], *, serve: Callable[..., Any],
        print_link: Callable[..., None]) -> int:
    return Supervisor(settings, workers, origins, serve=serve, print_link=print_link).run()
