"""One WebSocket call (seed 003): a server client's socket, the bridge's call core, one upstream socket.

The I/O edge around ``relay.bridge.CallCore`` with ``audio_over_events=True``: no RTP, no
media clock, no playout pacing. The client's audio arrives as ``input_audio_buffer.append``
events and the assistant's audio leaves as ``response.audio.delta`` events; everything goes
through the core, so the assistant's configuration, the session.update policy, dialect
translation, tool routing, the maximum call length and usage work exactly as for WebRTC calls.

Tasks, all owned by the call: the HTTP handler's task runs ``run()`` (waits for the end, then
tears down), one reader task (client -> core), one upstream task (connect + upstream -> core),
one writer task (a bounded byte backlog -> the client socket), and helper tasks for server
tools and upstream recycles. ``end(reason)`` may be called from anywhere; the teardown runs
once, in its own shielded task: stop the upstream reader and tools, flush the last events (an
``error`` first when the call failed), stop reading and close the client socket with a close
code (a full closing handshake), close the upstream, record usage, free the registry slot.
The object has what ``relay.media.registry.CallRegistry`` needs (``id``, ``device``,
``end_with_error``, ``wait_closed``, ``closed``), so both edges share one registry and its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from relay.bridge import CallCore, EndCall, RecordUsage, RecycleUpstream, RunServerTool, SendDevice, SendUpstream
from relay.bridge.core import AUDIO_FORMATS
from relay.media.call import CallUsage, error_event
from relay.media.ratelimit import TokenBucket

log = logging.getLogger("relay.edge")

MAX_HELPER_TASKS = 8
FLUSH_TIMEOUT_S = 1.0  # last events to a client that is not reading are given up after this
#: WebSocket close codes by end reason (RFC 6455); anything else closes normally (1000)
CLOSE_CODES = {
    "upstream_closed": aiohttp.WSCloseCode.INTERNAL_ERROR,
    "upstream_unavailable": aiohttp.WSCloseCode.INTERNAL_ERROR,
    "internal_error": aiohttp.WSCloseCode.INTERNAL_ERROR,
    "server_shutdown": aiohttp.WSCloseCode.GOING_AWAY,
    "client_too_slow": aiohttp.WSCloseCode.POLICY_VIOLATION,
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


class WsCall:
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
    ) -> None:
        self.id = call_id
        self.device = device
        self.ws = ws
        self.config = config
        self._upstream_factory = upstream_factory
        self._tool_runner = tool_runner
        self._usage_recorder = usage_recorder
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        self._log = {"session_id": call_id}
        self.usage = CallUsage(started_at=time.time())
        self.end_reason: str | None = None
        self.upstream: Any = None
        self._upstream_open = False
        self.core = CallCore(device.assistant, now=self._loop.time(), audio_format=config.audio_format,
                             max_call_s=config.max_call_s, recycle_after_s=config.recycle_after_s,
                             device_event_max_bytes=config.event_max_bytes, audio_over_events=True, log_id=call_id)
        self._bytes_per_s = AUDIO_FORMATS[config.audio_format][0] * 1000
        self._events = TokenBucket(config.events_per_s, burst=max(1.0, config.events_per_s))
        self._bytes = TokenBucket(float(config.bytes_per_s), burst=float(max(config.bytes_per_s,
                                                                             config.event_max_bytes)))
        self._flood_reported_at = float("-inf")
        self.events_refused = 0
        # client-bound events: a byte-bounded backlog drained by the writer task
        self._out: deque[str] = deque()
        self._out_bytes = 0
        self._out_wakeup = asyncio.Event()
        self._ended = asyncio.Event()
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._upstream_task: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[None]] = set()
        self._core_timer: asyncio.TimerHandle | None = None
        self._core_deadline: float | None = None

    # -- lifecycle ----------------------------------------------------------------
    async def run(self) -> None:
        """The whole call, in the HTTP handler's task: returns when everything is torn down."""
        try:
            self._writer = self._loop.create_task(self._write_loop(), name=f"ws-writer {self.id}")
            self._reader = self._loop.create_task(self._read_loop(), name=f"ws-reader {self.id}")
            self._upstream_task = self._loop.create_task(self._run_upstream(), name=f"ws-upstream {self.id}")
            self._arm_core_timer()
            log.info("websocket call started (assistant %s, %s)", self.device.assistant.id,
                     self.config.audio_format, extra=self._log)
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

    def end_with_error(self, reason: str, message: str, type_: str = "server_error") -> None:
        """Tell the client why (an ``error`` event, sent before the close), then end."""
        if self.end_reason is None:
            self._send_client(error_event(message, reason, type_))
        self.end(reason)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

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
            if self.end_reason is None:
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
            if now - self._flood_reported_at >= 1.0:  # at most one error event per second of flood
                self._flood_reported_at = now
                self._send_client(error_event("Too many events or bytes per second; some were dropped.",
                                              "rate_limit_exceeded", "rate_limit_error"))
            return
        self.core.on_device_message(raw, now)
        self._perform()

    def _send_client(self, event: dict[str, Any]) -> None:
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

    # -- upstream side --------------------------------------------------------------
    async def _run_upstream(self) -> None:
        try:
            await self._upstream_session()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("websocket call failed", extra=self._log)
            self.end_with_error("internal_error", "Internal error; the call ended.")

    async def _upstream_session(self) -> None:
        try:
            upstream = self.upstream = await self._upstream_factory(self.device.assistant, self.id)
            await upstream.connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # UpstreamError and friends: tell the client, end cleanly
            log.warning("upstream connect failed: %s", exc, extra=self._log)
            self.end_with_error("upstream_unavailable", f"The assistant is unavailable: {exc}")
            return
        if self.end_reason is not None:
            return
        self._upstream_open = True
        self.core.on_upstream_opened(self._loop.time())
        self._perform()
        while True:
            current = self.upstream
            async for event in current.events():
                if self.end_reason is not None:
                    return
                if current is not self.upstream:
                    break  # recycled: the old socket's late events are ignored
                self.core.on_upstream_event(event, self._loop.time())
                self._perform()
            if current is not self.upstream and self.end_reason is None:
                continue  # carry on reading the fresh upstream
            break
        self._upstream_open = False
        if self.end_reason is None:
            reason = self.upstream.close_reason or "upstream closed"
            log.info("upstream ended: %s", reason, extra=self._log)
            self.core.on_upstream_closed(reason, self._loop.time())  # error event to the client + EndCall
            self._perform()
            self.end("upstream_closed")

    async def _recycle(self, reason: str) -> None:
        """Replace the upstream socket (the core replays configuration and history on the new one)."""
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
            log.warning("upstream recycle failed: %s", exc, extra=self._log)
            if self.end_reason is None:
                self.core.on_upstream_closed(f"recycle failed: {exc}", self._loop.time())
                self._perform()
            return
        if self.end_reason is not None:
            await fresh.close()
            return
        old, self.upstream = self.upstream, fresh
        log.info("upstream recycled (%s)", reason, extra=self._log)
        self.core.on_upstream_opened(self._loop.time())
        self._perform()
        if old is not None:
            await old.close()  # ends the old read loop, which moves on to the fresh socket

    # -- the core's actions ------------------------------------------------------------
    def _perform(self) -> None:
        for action in self.core.drain_actions():
            if isinstance(action, SendUpstream):
                if self.upstream is not None and self._upstream_open:
                    event = action.event
                    if event.get("type") == "input_audio_buffer.append":
                        audio = event.get("audio")
                        if isinstance(audio, str):
                            self.usage.input_audio_s += len(audio) * 3 / 4 / self._bytes_per_s
                    self.upstream.send(event)
            elif isinstance(action, SendDevice):
                event = action.event
                if event.get("type") in _AUDIO_DELTAS:
                    delta = event.get("delta")
                    if isinstance(delta, str):
                        self.usage.output_audio_s += len(delta) * 3 / 4 / self._bytes_per_s
                self._send_client(event)
            elif isinstance(action, RunServerTool):
                if len(self._helpers) >= MAX_HELPER_TASKS:
                    self._tool_done(action.call_id, orjson.dumps({"error": "too many tool calls in flight"}).decode())
                else:
                    self._spawn(self._run_tool(action), f"tool {action.name} {self.id}")
            elif isinstance(action, RecordUsage):
                self.usage.input_tokens = int(action.totals.get("input_tokens", self.usage.input_tokens))
                self.usage.output_tokens = int(action.totals.get("output_tokens", self.usage.output_tokens))
            elif isinstance(action, RecycleUpstream):
                self._spawn(self._recycle(action.reason), f"recycle {self.id}")
            elif isinstance(action, EndCall):
                self.end(action.reason)
        self._arm_core_timer()

    def _arm_core_timer(self) -> None:
        if self.end_reason is not None:
            return
        deadline = self.core.next_deadline()
        if deadline == self._core_deadline:
            return
        if self._core_timer is not None:
            self._core_timer.cancel()
            self._core_timer = None
        self._core_deadline = deadline
        if deadline is not None:
            self._core_timer = self._loop.call_at(deadline, self._on_core_timer)

    def _on_core_timer(self) -> None:
        self._core_timer = None
        self._core_deadline = None
        if self.end_reason is None:
            self.core.on_timer(self._loop.time())
            self._perform()

    def _spawn(self, coro: Any, name: str) -> None:
        """A helper task the call owns: tracked, cancelled and awaited at teardown."""
        task = self._loop.create_task(coro, name=name)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _run_tool(self, action: RunServerTool) -> None:
        try:
            output = await self._tool_runner(action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("server tool %s failed: %s", action.name, type(exc).__name__, extra=self._log)
            output = orjson.dumps({"error": f"tool failed: {type(exc).__name__}"}).decode()
        self._tool_done(action.call_id, output)

    def _tool_done(self, call_id: str, output: str) -> None:
        if self.end_reason is None:
            self.core.on_tool_result(call_id, output, self._loop.time())
            self._perform()

    # -- teardown ------------------------------------------------------------------------
    async def _teardown(self) -> None:
        self.end(self.end_reason or "ended")
        if self._core_timer is not None:
            self._core_timer.cancel()
            self._core_timer = None
        try:
            # 1. nothing new comes from upstream or tools
            stoppers = [t for t in (self._upstream_task, *self._helpers) if t is not None and not t.done()]
            for task in stoppers:
                task.cancel()
            if stoppers:
                await asyncio.gather(*stoppers, return_exceptions=True)
            self._upstream_open = False
            # 2. the last events (an error first when the call failed) reach the client
            if self._writer is not None:
                self._out_wakeup.set()
                done, _ = await asyncio.wait({self._writer}, timeout=FLUSH_TIMEOUT_S)
                if not done:
                    self._writer.cancel()
                    await asyncio.gather(self._writer, return_exceptions=True)
            # 3. stop reading, then a full closing handshake (close() reads until the client's close frame)
            if self._reader is not None:
                self._reader.cancel()
                await asyncio.gather(self._reader, return_exceptions=True)
            reason = self.end_reason or "ended"
            code = CLOSE_CODES.get(reason, aiohttp.WSCloseCode.OK)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, asyncio.TimeoutError, RuntimeError):
                async with asyncio.timeout(2.5):
                    await self.ws.close(code=code, message=reason.encode()[:120])
        finally:
            try:
                if self.upstream is not None:
                    await self.upstream.close()
            finally:
                self.usage.ended_at = time.time()
                log.info("websocket call ended: %s", self.end_reason, extra=self._log)
                try:
                    if self._usage_recorder is not None:
                        await self._usage_recorder(self, self.usage)
                except Exception:
                    log.exception("recording usage failed", extra=self._log)
                finally:  # even when cancelled: the registry slot is freed and waiters wake up
                    self._closed.set()
                    self._on_finished(self)
