"""The worker's call plane: the per-worker services both call edges share (one ``CallPlane`` per worker).

- ``registry`` (``CallRegistry``: live calls of both edges, the worker's limits) and ``metrics``
  (``MediaMetrics``: the worker's call counters, shown by ``/v1/realtime/stats`` and ``/metrics``);
- admission: ``admit`` (a registry slot, counted when refused), ``admit_fleet`` (the fleet-wide caps
  of the store's live-call registry, ``relay.node.leases``), ``unadmit``, ``call_finished``;
- what a call is handed: ``open_upstream`` (its upstream socket over the plane's HTTP session, the
  built-in local assistant started on first use), ``run_tool`` (a server tool's webhook, with the
  private-address guard), ``record_usage`` (its final usage row; checkpoints run here too);
- a worker of ``relay serve --workers N``: its index, its siblings (hand-offs), its load in the
  node's shared table.

Domain errors only (``CallLimitReached``, ``ClientCallLimitReached``, ``HalfOpenLimitReached``,
``relay.store.live_calls.CapReached``, ``FleetUnavailable``): the web layer maps them to HTTP.
The WebRTC edge extends this with its own per-worker services (``relay.media.plane.MediaPlane``:
media clock, ICE port mux, ICE/DTLS settings); the call layer never imports an edge.
``start(db)`` once the event loop runs, ``close()`` at shutdown (live calls end first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from relay.bridge import RunServerTool
from relay.call.metrics import MediaMetrics
from relay.call.registry import (
    CallLimitReached,
    CallRegistry,
    ClientCallLimitReached,
    HalfOpenLimitReached,
    LiveCall,
)
from relay.call.tools import make_tool_session, run_webhook_tool
from relay.call.upstream import UpstreamClient, connect_request
from relay.call.usage import CallUsage, UsageBook
from relay.node.handoff import Siblings
from relay.node.leases import END_REASON, FleetCalls
from relay.settings import Settings
from relay.store.live_calls import CapReached, ensure_schema

log = logging.getLogger("relay.call")

__all__ = ["CallLimitReached", "CallPlane", "CapReached", "ClientCallLimitReached", "FleetUnavailable",
           "HalfOpenLimitReached"]


class FleetUnavailable(Exception):
    """The store's live-call registry did not answer: no call goes unregistered (and uncapped)."""


def upstream_connections(settings: Any) -> int:
    """The worker's cap on open upstream connections: each live call holds one, a recycle (the new
    socket opened before the old one closes) briefly two."""
    return 2 * max(1, settings.max_calls)


class CallPlane:
    """The per-worker services of both edges (module doc)."""

    def __init__(self, settings: Settings, *, worker: Any = None) -> None:
        self.settings = settings
        self.metrics = MediaMetrics()
        self.registry = CallRegistry(settings.max_calls, settings.max_calls_per_client,
                                     max_half_open=settings.max_half_open_calls,
                                     max_half_open_per_address=settings.max_half_open_calls_per_address)
        self.worker = worker  # relay.node.state.WorkerSlot under --workers N > 1 (None: the only worker)
        self.worker_index = worker.index if worker is not None else 0  # 0..N-1 on the node
        self.siblings: Siblings | None = None  # hand-offs to the node's other workers
        if worker is not None:
            self.registry.on_load = worker.set_load
            self.siblings = Siblings(worker.node.run_dir, timeout_s=settings.upstream_connect_timeout_s + 10)
        self.fleet: FleetCalls | None = None  # the store's live-call registry and caps (set by start)
        self.usage_book: UsageBook | None = None  # usage rows (set by start when there is a database)
        self.http: aiohttp.ClientSession | None = None  # upstream sockets (set by start: needs the loop)
        self.tool_http: aiohttp.ClientSession | None = None  # tool webhooks, with the private-address guard
        self.local_assistant_url = ""
        self.local_assistant_runner: Any = None
        self._local_lock = asyncio.Lock()
        self._usage_task: asyncio.Task[None] | None = None

    # -- admission ------------------------------------------------------------------------
    def admit(self, client_id: str, address: str | None = None) -> None:
        """A registry slot for ``client_id`` (a WebRTC offer gives its ``address``: half-open until
        connected); raises the registry's limit errors (each counted in ``metrics.calls_rejected``)."""
        try:
            self.registry.admit(client_id, address)
        except (CallLimitReached, ClientCallLimitReached, HalfOpenLimitReached):
            self.metrics.calls_rejected += 1
            raise

    async def admit_fleet(self, call_id: str, device: Any, edge: str = "webrtc") -> None:
        """The fleet-wide caps (one database round trip): ``CapReached`` (counted) or ``FleetUnavailable``.
        The caller holds a registry slot and gives it back (``unadmit``) when this raises."""
        if self.fleet is None:
            return
        try:
            await self.fleet.admit(call_id, device, edge)
        except CapReached:
            self.metrics.calls_rejected += 1
            raise
        except Exception as exc:
            log.warning("live-call admission failed: %s", type(exc).__name__)
            raise FleetUnavailable from None

    def unadmit(self, client_id: str, call_id: str | None = None, address: str | None = None) -> None:
        """An admitted call that did not start: its registry slot and (with ``call_id``) its fleet row go."""
        self.registry.release(client_id, address)
        if call_id is not None and self.fleet is not None:
            self.fleet.release_soon(call_id)

    def call_finished(self, call: LiveCall) -> None:
        """A call (either edge) ended: free its worker slot and its row in the fleet's registry."""
        self.registry.remove(call)
        if self.fleet is not None:
            self.fleet.release_soon(call.id)

    # -- what a call is handed ----------------------------------------------------------------
    async def local_assistant(self) -> str:
        """The built-in local assistant's URL, starting it on first use (stopped by ``close``)."""
        async with self._local_lock:
            if not self.local_assistant_url:
                from relay.assistant import start_local_assistant  # the assistant's server: only when used

                self.local_assistant_runner, self.local_assistant_url = await start_local_assistant(
                    "127.0.0.1", 0, session_s=self.settings.local_assistant_session_s)
                log.info("built-in local assistant started at %s", self.local_assistant_url)
            return self.local_assistant_url

    async def open_upstream(self, assistant: Any, log_id: str) -> UpstreamClient:
        """A call's upstream socket (not connected yet) over the plane's HTTP session."""
        settings = self.settings
        local_url = ""
        if assistant.provider == "local" and not assistant.upstream_url:
            local_url = await self.local_assistant()
        assert self.http is not None, "CallPlane.start() first"
        return UpstreamClient(self.http, connect_request(assistant, local_url=local_url),
                              connect_timeout_s=settings.upstream_connect_timeout_s,
                              send_queue_max=settings.upstream_send_queue_max, log_id=log_id,
                              heartbeat_s=settings.upstream_heartbeat_s)

    async def run_tool(self, action: RunServerTool) -> str:
        """A server-side tool's webhook: its JSON answer for the core."""
        settings = self.settings
        assert self.tool_http is not None, "CallPlane.start() first"
        return await run_webhook_tool(
            self.tool_http, action.webhook_url, name=action.name, call_id=action.call_id,
            arguments=action.arguments, timeout_s=settings.tool_timeout_s,
            max_response_bytes=settings.tool_max_response_bytes, allow_private=settings.tool_allow_private)

    async def record_usage(self, call: Any, usage: CallUsage) -> None:
        """A finished call's usage row (no database: nothing to record)."""
        if self.usage_book is not None:
            await self.usage_book.record_final(call, usage)

    # -- start and stop ----------------------------------------------------------------------
    async def start(self, db: Any = None) -> None:
        """The worker's services, once the loop runs: HTTP sessions, usage checkpoints and the fleet's
        live-call registry (with a database), the local assistant when the default assistant is it."""
        settings = self.settings
        # one upstream WebSocket per call (two while a recycle overlaps): aiohttp's default connector
        # holds at most 100 connections, which queued the 101st call's upstream connect for good
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=upstream_connections(settings)))
        self.tool_http = make_tool_session(allow_private=settings.tool_allow_private)
        if db is not None:
            self.usage_book = UsageBook(db, self.registry.calls, settings.usage_checkpoint_s)
            if settings.usage_checkpoint_s > 0:
                self._usage_task = asyncio.get_running_loop().create_task(self.usage_book.run(),
                                                                          name="usage checkpoints")
            await self._start_fleet(db)
        if not settings.upstream_url:  # the default assistant is the local one: start it now, not on a call
            await self.local_assistant()

    async def _start_fleet(self, db: Any) -> None:
        """The store's live-call registry for this worker: caps fleet-wide, leases, operator end requests."""
        await ensure_schema(db)
        settings = self.settings
        self.fleet = FleetCalls(db, node=settings.node_name, worker=self.worker_index,
                                lease_s=settings.call_lease_s, client_cap=settings.max_calls_per_client,
                                workspace_cap=settings.max_calls_per_workspace)

        def end_call(call_id: str) -> None:
            call = self.registry.get(call_id)
            if call is not None:
                log.info("ending call %s at an operator's request", call_id)
                call.end_with_error(END_REASON, "An operator ended this call.")

        self.fleet.start(end_call)

    async def drain(self) -> None:
        """Shutdown begins: no new calls; live calls get ``shutdown_timeout_s`` to end on their own."""
        if self.worker is not None:
            self.worker.set_draining()
        await self.registry.drain(self.settings.shutdown_timeout_s)

    async def close(self) -> None:
        """End what is left (each call's usage recorded), then stop the services."""
        await self.registry.drain(0)
        if self._usage_task is not None:
            self._usage_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._usage_task
        if self.fleet is not None:
            await self.fleet.close()
        if self.siblings is not None:
            await self.siblings.close()
        await self._close_edge()
        if self.local_assistant_runner is not None:
            await self.local_assistant_runner.cleanup()
        if self.tool_http is not None:
            await self.tool_http.close()
        if self.http is not None:
            await self.http.close()

    async def _close_edge(self) -> None:
        """An edge's own per-worker services stop here (after the calls and the fleet, before the HTTP sessions)."""
