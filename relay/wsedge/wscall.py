"""One WebSocket call (seed 003): a server client's socket, the bridge's call core, one upstream socket.

The I/O edge around ``relay.bridge.CallCore`` with ``audio_over_events=True``: no RTP, no
media clock, no playout pacing. The client's audio arrives as ``input_audio_buffer.append``
events and the assistant's audio leaves as ``response.audio.delta`` events; everything goes
through the core, so the assistant's configuration, the session.update policy, dialect
translation, tool routing, the maximum call length and usage work exactly as for WebRTC calls.

Tasks, all owned by the call: the HTTP handler's task runs ``run()`` (waits for the end, then
tears down), one reader task (client -> core), one upstream task (connect + upstream -> core),
one writer task (a bounded byte backlog -> the client socket), and helper tasks for server
tools and upstream recycles (the upstream session, the action performer, the core timer and the
helper tasks are ``relay.call.driver.CallDriver``, shared with WebRTC calls; this class adds the
client socket and the audio-seconds usage). ``end(reason)`` may be called from anywhere; the teardown runs
once, in its own shielded task: stop the upstream reader and tools, flush the last events (an
``error`` first when the call failed), stop reading and close the client socket with a close
code (a full closing handshake), close the upstream, record usage, free the registry slot.

A client that does not read (``client_too_slow``, or a flush that does not finish): its events are
dropped, the close frame is written without waiting for the socket to drain, the client gets
``CLOSE_GRACE_S`` to read up to it and answer, then the transport is aborted (reset). The writer
task is never cancelled while it waits for the socket to drain: aiohttp shares one drain future
among its waiters, so cancelling one would cancel the close's wait too.
The object has what ``relay.call.registry.CallRegistry`` needs (``id``, ``device``,
``end_with_error``, ``wait_closed``, ``closed``), so both edges share one registry and its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from relay.bridge import CallCore, RunServerTool
from relay.bridge.core import error_event
from relay.call.driver import CallDriver
from relay.call.metrics import MediaMetrics, bump
from relay.call.ratelimit import TokenBucket
from relay.call.usage import CallUsage

log = logging.getLogger("relay.wsedge")

FLUSH_TIMEOUT_S = 1.0  # last events to a client that is not reading are given up after this
CLOSE_GRACE_S = 2.0  # a client not reading gets this long to read up to the close frame; then: reset
#: WebSocket close codes by end reason (RFC 6455); anything else closes normally (1000)
CLOSE_CODES = {
    "upstream_closed": aiohttp.WSCloseCode.INTERNAL_ERROR,
    "upstream_unavailable": aiohttp.WSCloseCode.INTERNAL_ERROR,
    "internal_error": aiohttp.WSCloseCode.INTERNAL_ERROR,
    "server_shutdown": aiohttp.WSCloseCode.GOING_AWAY,
    "client_too_slow": aiohttp.WSCloseCode.POLICY_VIOLATION,
    "upstream_timeout": aiohttp.WSCloseCode.INTERNAL_ERROR,
}
_AUDIO_DELTAS = frozenset({"response.audio.delta", "response.output_audio.delta"})


@dataclass(frozen=True)
class WsCallConfig:
    audio_format: str = "pcm16"
    max_call_s: float = 3600.0
    recycle_after_s: float | None = 3300.0
    event_max_bytes: int = 256 * 1024
    events_per_s: float = 200.0
    bytes_per_s: int = 1 << 20
    send_backlog_bytes: int = 8 << 20
    client_dialect: str = "beta"  # chosen at the handshake (relay.web.ws_edge.handshake_dialect)
    upstream_slow_notice_s: float = 2.0
    heartbeat_s: float = 3.0  # the socket's aiohttp heartbeat (set by the edge); used to bill a client_timeout


class WsCall(CallDriver):
    _logger = log

    def __init__(
        self,
        *,
        call_id: str,
        device: Any,
        ws: web.WebSocketResponse,
        config: WsCallConfig,
        upstream_factory: Callable[[Any, str], Awaitable[Any]],
        tool_runner: Callable[[RunServerTool], Awaitable[str]],
        usage_recorder: Callable[[Any, CallUsage], Awaitable[None]] | None = None,
        on_finished: Callable[[Any], None] = lambda call: None,
        transport: asyncio.Transport | None = None,
        metrics: MediaMetrics | None = None,
    ) -> None:
        super().__init__(call_id=call_id, device=device, upstream_factory=upstream_factory,
                         tool_runner=tool_runner, usage_recorder=usage_recorder, on_finished=on_finished,
                         audio_format=config.audio_format)
        self.ws = ws
        self._transport = transport  # the client's TCP transport (aborted when the client does not read)
        # the worker's call counters, shared with WebRTC calls (GET /metrics: relay_calls_*)
        self.metrics = metrics if metrics is not None else MediaMetrics()
        self.config = config
        self.upstream_slow_notice_s = config.upstream_slow_notice_s
        self.core: CallCore = CallCore(device.assistant, now=self._loop.time(), audio_format=config.audio_format,
                             max_call_s=config.max_call_s, recycle_after_s=config.recycle_after_s,
                             device_dialect=config.client_dialect,
                             device_event_max_bytes=config.event_max_bytes, audio_over_events=True, log_id=call_id)
        self._events = TokenBucket(config.events_per_s, burst=max(1.0, config.events_per_s))
        self._bytes = TokenBucket(float(config.bytes_per_s), burst=float(max(config.bytes_per_s,
                                                                             config.event_max_bytes)))
        self.events_refused = 0
        # client-bound events: a byte-bounded backlog drained by the writer task
        self._out: deque[str] = deque()
        self._out_bytes = 0
        self._out_wakeup = asyncio.Event()
        self._ended = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._upstream_task: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        """The whole call, in the HTTP handler's task: returns when everything is torn down."""
        try:
            self._writer = self._loop.create_task(self._write_loop(), name=f"ws-writer {self.id}")
            self._reader = self._loop.create_task(self._read_loop(), name=f"ws-reader {self.id}")
            self._upstream_task = self._loop.create_task(self._run_upstream(), name=f"ws-upstream {self.id}")
            self._arm_core_timer()
            self.metrics.calls_started += 1
            log.info("websocket call started (assistant %s, %s, %s dialect)", self.device.assistant.id,
                     self.config.audio_format, self.config.client_dialect, extra=self._log)
            await self._ended.wait()
        finally:
            # its own task, shielded: a cancelled handler (connection lost, with aiohttp's
            # handler_cancellation) must not cut the teardown short; wait_closed() waits for it
            teardown = self._loop.create_task(self._teardown(), name=f"ws-teardown {self.id}")
            await asyncio.shield(teardown)

    def end(self, reason: str) -> None:
        """End the call (idempotent, callable from any callback or task)."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self._ended.set()
        self._out_wakeup.set()

    # -- client side ----------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._on_client_message(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    log.info("client socket error: %r", self.ws.exception(), extra=self._log)
                    break
                if self.end_reason is not None:
                    return
        finally:
            if self.end_reason is None and isinstance(self.ws.exception(), asyncio.TimeoutError):
                # no frame, then no pong to relay's ping: the client is gone (frozen, or its path is)
                silent_s = self.config.heartbeat_s * 1.5
                log.info("client silent for %g s (no pong); ending the call", silent_s, extra=self._log)
                self.usage.ended_at = time.time() - silent_s  # billed to its last frame
                self.end("client_timeout")
            elif self.end_reason is None:
                code = self.ws.close_code
                log.info("client closed the socket (code %s)", code, extra=self._log)
                self.core.on_device_closed(self._loop.time())
                self._perform()
                self.end("client_closed")

    def _on_client_message(self, raw: str | bytes) -> None:
        if self.end_reason is not None:
            return
        now = self._loop.time()
        size = len(raw)  # characters for text: a lower bound of the bytes, the core checks exactly
        if not (self._events.allow(now) and self._bytes.allow(now, min(float(size), self._bytes.burst))):
            self.events_refused += 1
            self._flood_notice(now, "Too many events or bytes per second; some were dropped.")
            return
        if isinstance(raw, bytes):  # events are JSON in text frames (as OpenAI's Realtime API has them)
            self._send_device(error_event("Binary frames are not accepted: send each event as JSON in a text "
                                          "frame.", code="invalid_event"))
            return
        self.core.on_device_message(raw, now)
        self._perform()

    def _send_device(self, event: dict[str, Any]) -> None:
        """Queue an event for the client socket (the writer task sends it)."""
        if self._ended.is_set() and self._writer is not None and self._writer.done():
            return
        text = orjson.dumps(event).decode()
        self._out.append(text)
        self._out_bytes += len(text)
        self._out_wakeup.set()
        if self._out_bytes > self.config.send_backlog_bytes and self.end_reason is None:
            log.warning("client is not reading (%d bytes queued); ending the call", self._out_bytes,
                        extra=self._log)
            self._out.clear()
            self._out_bytes = 0
            self.end("client_too_slow")

    async def _write_loop(self) -> None:
        """Sends queued events in order; after the end, flushes what is left and returns."""
        ws = self.ws
        try:
            while True:
                while self._out:
                    text = self._out.popleft()
                    self._out_bytes -= len(text)
                    await ws.send_str(text)
                if self._ended.is_set():
                    return
                self._out_wakeup.clear()
                await self._out_wakeup.wait()
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:  # the client went away mid-send
            log.info("sending to the client failed: %s", type(exc).__name__, extra=self._log)
            self._out.clear()
            self._out_bytes = 0
            self.end("client_closed")

    def _abort_transport(self) -> None:
        """Drop the client's connection at once (a reset: nothing queued for it is kept, in relay
        or in the kernel)."""
        transport = self._transport
        if transport is None or (transport.is_closing() and transport.get_write_buffer_size() == 0):
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        log.info("aborting the client's connection (%d bytes unsent)", transport.get_write_buffer_size(),
                 extra=self._log)
        transport.abort()

    # -- upstream side --------------------------------------------------------------
    async def _run_upstream(self) -> None:
        try:
            await self._upstream_session()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("websocket call failed", extra=self._log)
            self.end_with_error("internal_error", "Internal error; the call ended.")

    # -- CallDriver hooks: counters, usage in audio seconds ----------------------------------
    def _count(self, metric: str) -> None:
        setattr(self.metrics, metric, getattr(self.metrics, metric) + 1)

    def _on_upstream_connect_failed(self, exc: Exception) -> None:
        self._count("upstream_connect_failures")
        super()._on_upstream_connect_failed(exc)

    def _forward_upstream(self, event: dict[str, Any]) -> None:
        if event.get("type") == "input_audio_buffer.append":
            audio = event.get("audio")
            if isinstance(audio, str):
                self.meter.input_base64(audio)
        self.upstream.send(event)

    def _forward_device(self, event: dict[str, Any]) -> None:
        if event.get("type") in _AUDIO_DELTAS:
            delta = event.get("delta")
            if isinstance(delta, str):
                self.meter.output_base64(delta)
        self._send_device(event)

    # -- teardown ------------------------------------------------------------------------
    async def _teardown(self) -> None:
        self.end(self.end_reason or "ended")
        self._cancel_core_timer()
        try:
            # 1. nothing new comes from upstream or tools
            await self._stop_tasks(self._upstream_task)
            self._upstream_open = False
            # 2. the last events (an error first when the call failed) reach the client, unless it is
            #    the one not reading (its queue was dropped)
            stuck = False
            if self._writer is not None:
                self._out_wakeup.set()
                flush_s = 0.0 if self.end_reason == "client_too_slow" else FLUSH_TIMEOUT_S
                if flush_s:
                    await asyncio.wait({self._writer}, timeout=flush_s)
                stuck = not self._writer.done()
                if stuck:
                    self._out.clear()
                    self._out_bytes = 0
            # 3. stop reading, then the closing handshake (close() reads until the client's close frame);
            #    a client that does not read gets CLOSE_GRACE_S to read up to the close frame
            if self._reader is not None:
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
            reason = self.end_reason or "ended"
            code = CLOSE_CODES.get(reason, aiohttp.WSCloseCode.OK)
            clean = False
            try:
                async with asyncio.timeout(CLOSE_GRACE_S if stuck else 2.5):
                    # drain=False when stuck: never wait on the drain future the writer waits on
                    await self.ws.close(code=code, message=reason.encode()[:120], drain=not stuck)
                    clean = True
            except asyncio.CancelledError:
                # aiohttp cancels its own waiters when the connection is lost; only a cancellation
                # of this task is ours to pass on (the call is not an error either way)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
            except (TimeoutError, ConnectionError, aiohttp.ClientError, RuntimeError):
                pass
            if stuck or not clean:
                self._abort_transport()
            if self._writer is not None and not self._writer.done():
                # the abort woke its drain (connection lost); cancelling is safe now either way
                done, _ = await asyncio.wait({self._writer}, timeout=0.5)
                if not done:
                    self._writer.cancel()
                    await asyncio.gather(self._writer, return_exceptions=True)
        finally:
            try:
                if self.upstream is not None:
                    await self.upstream.close()
            finally:
                self.usage.ended_at = self.usage.ended_at or time.time()
                self.metrics.calls_ended += 1
                bump(self.metrics.calls_ended_by_reason, self.end_reason or "ended")
                log.info("websocket call ended: %s", self.end_reason, extra=self._log)
                try:
                    await self._record_usage()
                finally:  # even when cancelled: the registry slot is freed and waiters wake up
                    self._closed.set()
                    self._on_finished(self)
