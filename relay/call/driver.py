"""The machinery both call edges share: drive one ``relay.bridge.CallCore`` over asyncio.

``CallDriver`` is the I/O half around the sans-I/O core (which stays free of sockets and tasks):
it connects and reads the upstream socket (and replaces it when the core asks for a recycle),
performs the core's actions in order (SendUpstream / SendDevice / RunServerTool / RecordUsage /
RecycleUpstream / EndCall), keeps one timer handle for the core's next deadline, and owns the
helper tasks for server tools and recycles (at most ``MAX_TOOL_TASKS``; cancelled and awaited at
teardown by ``_stop_helpers``).

Subclasses are the edges: ``relay.media.call.Call`` (WebRTC: peer, data channel, media clock)
and ``relay.wsedge.wscall.WsCall`` (a server client's WebSocket). They supply the hooks:

- ``_send_device(event)``: how an event reaches the device (data channel vs WebSocket);
- ``end(reason)``: how the call is stopped (each edge owns its tasks and teardown order);
- optional: ``_forward_upstream`` / ``_forward_device`` (e.g. usage accounting of audio seconds),
  ``_on_upstream_connect_failed``, ``_on_upstream_ready``, ``_on_upstream_event_seen``,
  ``_count(metric)`` (counters the edge keeps).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from relay.bridge import (
    CallCore,
    EndCall,
    RecordUsage,
    RecycleUpstream,
    RunServerTool,
    SendDevice,
    SendUpstream,
)
from relay.bridge.core import error_event
from relay.call.usage import AudioMeter, CallUsage

MAX_TOOL_TASKS = 8  # helper tasks (server tools, recycles) in flight per call


class CallDriver:
    """Upstream read loop + recycle, action performer, core timer, helper tasks (see module doc)."""

    _logger = logging.getLogger("relay.call")  # subclasses set their area's logger

    def __init__(
        self,
        *,
        call_id: str,
        device: Any,
        upstream_factory: Callable[[Any, str], Awaitable[Any]],
        tool_runner: Callable[[RunServerTool], Awaitable[str]],
        usage_recorder: Callable[[Any, CallUsage], Awaitable[None]] | None,
        on_finished: Callable[[Any], None],
        audio_format: str,
    ) -> None:
        self.id = call_id
        self.device = device
        self._upstream_factory = upstream_factory
        self._tool_runner = tool_runner
        self._usage_recorder = usage_recorder
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        self._log = {"session_id": call_id}
        self.usage = CallUsage(started_at=time.time())
        #: counts audio seconds into ``usage`` (both edges, in the audio format spoken with the assistant)
        self.meter = AudioMeter(self.usage, audio_format)
        self.end_reason: str | None = None
        self.core: CallCore | None = None
        self.upstream: Any = None
        self._upstream_open = False
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._core_timer: asyncio.TimerHandle | None = None
        self._core_deadline: float | None = None
        self._closed = asyncio.Event()
        self._flood_reported_at = float("-inf")
        #: an upstream handshake pending this long gets the device an ``upstream_slow`` notice (subclasses set it)
        self.upstream_slow_notice_s = 2.0

    # -- hooks ---------------------------------------------------------------------
    def checkpoint_usage(self, now_wall: float) -> CallUsage:
        """What the call has used so far, as of ``now_wall`` (a usage checkpoint; no I/O)."""
        return dataclasses.replace(self.usage, ended_at=max(now_wall, self.usage.started_at))

    def _send_device(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def end(self, reason: str) -> None:
        raise NotImplementedError

    def _forward_upstream(self, event: dict[str, Any]) -> None:
        """A SendUpstream action while the upstream is open."""
        self.upstream.send(event)

    def _forward_device(self, event: dict[str, Any]) -> None:
        """A SendDevice action."""
        self._send_device(event)

    def _on_upstream_connect_failed(self, exc: Exception) -> None:
        self._logger.warning("upstream connect failed: %s", exc, extra=self._log)
        self.end_with_error("upstream_unavailable", f"The assistant is unavailable: {exc}")

    def _on_upstream_ready(self, upstream: Any) -> None:
        """The first upstream socket is open and the core has been told (e.g. flush early audio)."""

    def _on_upstream_event_seen(self, event: dict[str, Any]) -> None:
        """An upstream event, just before the core gets it."""

    def _count(self, metric: str) -> None:
        """One more of ``metric`` (``upstream_connect_failures``, ``upstream_recycles``, ...)."""

    def _flood_notice(self, now: float, message: str) -> None:
        """Tell the device its events are being dropped (a ``rate_limit_exceeded`` error event), at most
        once per second of flood (``now``: loop time)."""
        if now - self._flood_reported_at >= 1.0:
            self._flood_reported_at = now
            self._send_device(error_event(message, code="rate_limit_exceeded", etype="rate_limit_error"))

    # -- end -------------------------------------------------------------------------
    def end_with_error(self, reason: str, message: str, type_: str = "server_error") -> None:
        """Tell the device why (an ``error`` event, delivered before the close), then end."""
        if self.end_reason is None:
            self._send_device(error_event(message, code=reason, etype=type_))
        self.end(reason)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- upstream ----------------------------------------------------------------------
    async def _upstream_session(self) -> None:
        """Connect the upstream, then feed its events to the core until it or the call ends."""
        core = self.core
        assert core is not None
        notice = self._loop.call_later(self.upstream_slow_notice_s, self._upstream_slow)
        try:
            upstream = self.upstream = await self._upstream_factory(self.device.assistant, self.id)
            await upstream.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # UpstreamError and friends: tell the device, end cleanly
            self._on_upstream_connect_failed(exc)
            return
        finally:
            notice.cancel()
        if self.end_reason is not None:
            return
        self._upstream_open = True
        core.on_upstream_opened(self._loop.time())
        self._perform()
        self._on_upstream_ready(upstream)
        while True:
            current = self.upstream
            async for event in current.events():
                if self.end_reason is not None:
                    return
                if current is not self.upstream:
                    break  # recycled: the old socket's late events are ignored
                self._on_upstream_event_seen(event)
                core.on_upstream_event(event, self._loop.time())
                self._perform()
            if current is not self.upstream and self.end_reason is None:
                continue  # carry on reading the fresh upstream
            break
        self._upstream_open = False
        if self.end_reason is None:
            reason = self.upstream.close_reason or "upstream closed"
            self._logger.info("upstream ended: %s", reason, extra=self._log)
            code = "upstream_timeout" if getattr(self.upstream, "timed_out", False) else "upstream_closed"
            core.on_upstream_closed(reason, self._loop.time(), code)  # error event to the device + EndCall
            self._perform()
            self.end(code)

    def _upstream_slow(self) -> None:
        """The upstream handshake is still pending: tell the device (the connect goes on to its timeout)."""
        if self.end_reason is None:
            self._logger.info("upstream handshake pending after %g s", self.upstream_slow_notice_s, extra=self._log)
            self._send_device(error_event("The assistant is slow to answer; still connecting.", code="upstream_slow",
                                          etype="server_error"))

    async def _recycle(self, reason: str) -> None:
        """Replace the upstream socket (the core replays configuration and history on the new one)."""
        core = self.core
        assert core is not None
        fresh: Any = None
        try:
            fresh = await self._upstream_factory(self.device.assistant, self.id)
            await fresh.connect()
        except asyncio.CancelledError:
            if fresh is not None:
                await fresh.close()
            raise
        except Exception as exc:
            if fresh is not None:
                await fresh.close()
            self._count("upstream_recycle_failures")
            self._logger.warning("upstream recycle failed: %s", exc, extra=self._log)
            if self.end_reason is None:
                core.on_upstream_closed(f"recycle failed: {exc}", self._loop.time())
                self._perform()
            return
        if self.end_reason is not None:
            await fresh.close()
            return
        old, self.upstream = self.upstream, fresh
        self._count("upstream_recycles")
        self._logger.info("upstream recycled (%s)", reason, extra=self._log)
        core.on_upstream_opened(self._loop.time())
        self._perform()
        if old is not None:
            await old.close()  # ends the old read loop, which moves on to the fresh socket

    # -- the core's actions ------------------------------------------------------------
    def _perform(self) -> None:
        core = self.core
        assert core is not None
        for action in core.drain_actions():
            if isinstance(action, SendUpstream):
                if self.upstream is not None and self._upstream_open:
                    self._forward_upstream(action.event)
            elif isinstance(action, SendDevice):
                self._forward_device(action.event)
            elif isinstance(action, RunServerTool):
                self._spawn_tool(action)
            elif isinstance(action, RecordUsage):
                self.usage.input_tokens = int(action.totals.get("input_tokens", self.usage.input_tokens))
                self.usage.output_tokens = int(action.totals.get("output_tokens", self.usage.output_tokens))
            elif isinstance(action, RecycleUpstream):
                self._spawn(self._recycle(action.reason), f"recycle {self.id}")
            elif isinstance(action, EndCall):
                self.end(action.reason)
        self._arm_core_timer()

    # -- the core's timer ----------------------------------------------------------------
    def _arm_core_timer(self) -> None:
        if self.core is None or self.end_reason is not None:
            return
        deadline = self.core.next_deadline()
        if deadline == self._core_deadline:
            return
        self._cancel_core_timer()
        self._core_deadline = deadline
        if deadline is not None:
            self._core_timer = self._loop.call_at(deadline, self._on_core_timer)

    def _cancel_core_timer(self) -> None:
        if self._core_timer is not None:
            self._core_timer.cancel()
            self._core_timer = None

    def _on_core_timer(self) -> None:
        self._core_timer = None
        self._core_deadline = None
        if self.end_reason is None and self.core is not None:
            self.core.on_timer(self._loop.time())
            self._perform()

    # -- helper tasks (server tools, recycles) -----------------------------------------------
    def _spawn_tool(self, action: RunServerTool) -> None:
        if len(self._tool_tasks) >= MAX_TOOL_TASKS:
            self._tool_done(action.call_id, orjson.dumps({"error": "too many tool calls in flight"}).decode())
            return
        self._spawn(self._run_tool(action), f"tool {action.name} {self.id}")

    def _spawn(self, coro: Any, name: str) -> None:
        """A helper task the call owns: tracked, cancelled and awaited at teardown."""
        task = self._loop.create_task(coro, name=name)
        self._tool_tasks.add(task)
        task.add_done_callback(self._tool_tasks.discard)

    async def _run_tool(self, action: RunServerTool) -> None:
        try:
            output = await self._tool_runner(action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._logger.warning("server tool %s failed: %s", action.name, type(exc).__name__, extra=self._log)
            output = orjson.dumps({"error": f"tool failed: {type(exc).__name__}"}).decode()
        self._tool_done(action.call_id, output)

    def _tool_done(self, call_id: str, output: str) -> None:
        if self.end_reason is None and self.core is not None:
            self.core.on_tool_result(call_id, output, self._loop.time())
            self._perform()

    # -- teardown parts ----------------------------------------------------------------------
    async def _stop_tasks(self, *extra: asyncio.Task[None] | None) -> None:
        """Cancel the helper tasks (and ``extra`` tasks still running) and wait for them."""
        stoppers = [t for t in (*extra, *self._tool_tasks) if t is not None and not t.done()]
        for task in stoppers:
            task.cancel()
        if stoppers:
            await asyncio.gather(*stoppers, return_exceptions=True)

    async def _record_usage(self) -> None:
        if self._usage_recorder is not None:
            try:
                await self._usage_recorder(self, self.usage)
            except Exception:
                self._logger.exception("recording usage failed", extra=self._log)
