"""One call: a device's peer, the bridge's call core, and one upstream socket.

The I/O edge around ``relay.bridge.CallCore`` (see its docstring for the contract):

- the peer's uplink sink emits fixed-length chunks -> ``input_audio_buffer.append`` upstream;
- data-channel messages -> ``core.on_device_message``; upstream events -> ``core.on_upstream_event``;
- the per-worker media clock calls ``tick(now)`` -> ``core.pull_frame(now)`` -> encode -> the track;
- the core's actions are performed in order, synchronously (sends are queued, tools run in
  tasks the call owns);
- one timer handle for the core's next deadline, one for the connect timeout, one for the
  maximum call length -- handles, not tasks.

Lifecycle: ``start(offer)`` answers and spawns the call's one task (upstream connect + read
loop). ``end(reason)`` may be called from anywhere (callbacks, the clock, the registry); the
task's ``finally`` tears everything down exactly once -- peer, upstream, timers, tool tasks,
clock registration -- and records usage. ``wait_closed()`` returns when that is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from relay.bridge import (
    CallCore,
    EndCall,
    RecordUsage,
    RecycleUpstream,
    RunServerTool,
    SendDevice,
    SendUpstream,
    append_event,
)
from relay.media.clock import MediaClock
from relay.media.codecs import AudioCodec
from relay.media.downlink import DownlinkEncoder, PacketTrack
from relay.media.metrics import MediaMetrics, bump
from relay.media.peer import Peer
from relay.media.ratelimit import TokenBucket
from relay.media.uplink import UplinkSink

log = logging.getLogger("relay.media")

MAX_TOOL_TASKS = 8
DTX_HANGOVER_TICKS = 5  # silent frames still sent after audio (lets the device's decoder fade out)
DTX_KEEPALIVE_TICKS = 20  # during DTX, one silent frame every 400 ms
PRECONNECT_CHUNKS_MAX = 25  # uplink chunks kept while the upstream connects (1 s at 40 ms)


class Upstream(Protocol):
    """What the call needs of ``relay.upstream.client.UpstreamClient``."""

    close_reason: str | None

    async def connect(self) -> None: ...

    def send(self, event: dict[str, Any]) -> bool: ...

    def events(self) -> Any: ...  # async iterator of dict events

    async def close(self) -> None: ...


@dataclass(frozen=True)
class CallConfig:
    """The media knobs of a call (from settings)."""

    uplink_chunk_ms: int = 40
    opus_complexity: int = 5
    opus_bitrate_bps: int = 32000
    dc_queue_max: int = 256
    dc_max_buffered_bytes: int = 1 << 20
    device_events_per_s: float = 50.0
    ice_public_ip: str = ""
    ice_port_range: tuple[int, int] | None = None
    dtx: bool = False
    ice_connect_timeout_s: float = 15.0
    max_call_s: float = 3600.0  # enforced by the core's deadline (device gets an error event first)
    recycle_after_s: float | None = 3300.0
    device_event_max_bytes: int = 256 * 1024


@dataclass
class CallUsage:
    started_at: float
    ended_at: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    input_audio_s: float = 0.0
    output_audio_s: float = 0.0


def error_event(message: str, code: str, type_: str = "server_error") -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "code": code, "message": message}}


class Call:
    def __init__(
        self,
        *,
        call_id: str,
        device: Any,
        codec: AudioCodec,
        config: CallConfig,
        metrics: MediaMetrics,
        clock: MediaClock,
        upstream_factory: Callable[[Any, str], Awaitable[Upstream]],
        tool_runner: Callable[[RunServerTool], Awaitable[str]],
        usage_recorder: Callable[[Call, CallUsage], Awaitable[None]] | None = None,
        on_finished: Callable[[Call], None] = lambda call: None,
        max_playback_hz: int | None = None,
    ) -> None:
        self.id = call_id
        self.device = device
        self.codec = codec
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self._upstream_factory = upstream_factory
        self._tool_runner = tool_runner
        self._usage_recorder = usage_recorder
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        self._log = {"session_id": call_id}
        self.usage = CallUsage(started_at=time.time())
        self.end_reason: str | None = None
        self.core: CallCore | None = None
        self.upstream: Upstream | None = None
        self._upstream_open = False
        self._preconnect: deque[bytes] = deque(maxlen=PRECONNECT_CHUNKS_MAX)
        self._task: asyncio.Task[None] | None = None
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._core_timer: asyncio.TimerHandle | None = None
        self._core_deadline: float | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._closed = asyncio.Event()
        self._tearing_down = False
        self._event_bucket = TokenBucket(config.device_events_per_s, burst=config.device_events_per_s)
        self._flood_reported_at = float("-inf")
        self._audio_frames_out = 0
        # downlink latency: when the first audio delta after an idle stretch arrived; matched with
        # the first frame that leaves for the device (dropped if that audio never plays, e.g. muted)
        self._delta_mark: float | None = None
        self._was_idle = True
        self._idle_ticks = 0
        self._encoder = DownlinkEncoder(codec, complexity=config.opus_complexity,
                                        bitrate_bps=config.opus_bitrate_bps, max_playback_hz=max_playback_hz)
        self.track = PacketTrack(self._encoder, metrics=metrics)
        self.sink = UplinkSink(codec, chunk_ms=config.uplink_chunk_ms, on_chunk=self._on_uplink_chunk,
                               metrics=metrics)
        self.peer = Peer(codec=codec, track=self.track, sink=self.sink, metrics=metrics,
                         on_message=self._on_device_message, on_closed=self._on_peer_closed,
                         dc_queue_max=config.dc_queue_max, dc_max_buffered_bytes=config.dc_max_buffered_bytes,
                         public_ip=config.ice_public_ip, port_range=config.ice_port_range, log_extra=self._log)

    # -- start ---------------------------------------------------------------
    async def start(self, offer_sdp: str) -> str:
        """Answer the offer and start the call. Raises ``OfferError``; then nothing is left running."""
        try:
            answer = await self.peer.answer(offer_sdp)
            self.core = CallCore(self.device.assistant, now=self._loop.time(),
                                 audio_format=self.codec.upstream_format, max_call_s=self.config.max_call_s,
                                 recycle_after_s=self.config.recycle_after_s,
                                 device_event_max_bytes=self.config.device_event_max_bytes, log_id=self.id)
        except BaseException:
            await self.peer.close()  # idempotent: answer() already closed it if it failed there
            self._encoder.close()
            self._closed.set()
            raise
        self._clock.register(self)
        self._timers.append(self._loop.call_later(self.config.ice_connect_timeout_s, self._connect_deadline))
        self._arm_core_timer()
        self.metrics.calls_started += 1
        self._task = self._loop.create_task(self._run(), name=f"call {self.id}")
        log.info("call started (codec %s, upstream format %s)", self.codec.name, self.codec.upstream_format,
                 extra=self._log)
        return answer

    # -- the call's task -------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._run_upstream()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("call failed", extra=self._log)
            if self.end_reason is None:
                self._send_device(error_event("Internal error; the call ended.", "internal_error"))
                self.end_reason = "internal_error"
        finally:
            await self._teardown()

    async def _run_upstream(self) -> None:
        assert self.core is not None
        try:
            upstream = self.upstream = await self._upstream_factory(self.device.assistant, self.id)
            await upstream.connect()
        except Exception as exc:  # UpstreamError and friends: tell the device, end cleanly
            self.metrics.upstream_connect_failures += 1
            log.warning("upstream connect failed: %s", exc, extra=self._log)
            self._send_device(error_event(f"The assistant is unavailable: {exc}", "upstream_unavailable"))
            self.end("upstream_unavailable")
            return
        if self.end_reason is not None:
            return
        self._upstream_open = True
        self.core.on_upstream_opened(self._loop.time())
        self._perform()
        while self._preconnect:
            upstream.send(append_event(self._preconnect.popleft()))
        while True:
            current = self.upstream
            async for event in current.events():
                if self.end_reason is not None:
                    return
                if current is not self.upstream:
                    break  # recycled: the old socket's late events are ignored
                if self._was_idle and self._delta_mark is None and \
                        event.get("type") in ("response.audio.delta", "response.output_audio.delta"):
                    self._delta_mark = time.perf_counter()
                self.core.on_upstream_event(event, self._loop.time())
                self._perform()
            if current is not self.upstream and self.end_reason is None:
                continue  # carry on reading the fresh upstream
            break
        self._upstream_open = False
        if self.end_reason is None:
            reason = self.upstream.close_reason or "upstream closed"
            log.info("upstream ended: %s", reason, extra=self._log)
            self.core.on_upstream_closed(reason, self._loop.time())  # error event to the device + EndCall
            self._perform()
            self.end("upstream_closed")

    async def _recycle(self, reason: str) -> None:
        """Replace the upstream socket (the core replays configuration and history on the new one)."""
        assert self.core is not None
        fresh: Upstream | None = None
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
            self.metrics.upstream_recycle_failures += 1
            log.warning("upstream recycle failed: %s", exc, extra=self._log)
            if self.end_reason is None:
                self.core.on_upstream_closed(f"recycle failed: {exc}", self._loop.time())
                self._perform()
            return
        if self.end_reason is not None:
            await fresh.close()
            return
        old, self.upstream = self.upstream, fresh
        self.metrics.upstream_recycles += 1
        log.info("upstream recycled (%s)", reason, extra=self._log)
        self.core.on_upstream_opened(self._loop.time())
        self._perform()
        if old is not None:
            await old.close()  # ends the old read loop, which moves on to the fresh socket

    # -- inputs ----------------------------------------------------------------
    def _on_uplink_chunk(self, chunk: bytes, arrival_s: float) -> None:
        if self.end_reason is not None:
            return
        self.usage.input_audio_s += self.config.uplink_chunk_ms / 1000
        if not self._upstream_open or self.upstream is None:
            self._preconnect.append(chunk)
            return
        self.upstream.send(append_event(chunk))
        self.metrics.uplink_latency.add(time.perf_counter() - arrival_s)

    def _on_device_message(self, raw: str | bytes) -> None:
        if self.end_reason is not None or self.core is None:
            return
        self.metrics.dc_events_in += 1
        now = self._loop.time()
        if not self._event_bucket.allow(now):
            self.metrics.dc_events_refused += 1
            if now - self._flood_reported_at >= 1.0:  # at most one error event per second of flood
                self._flood_reported_at = now
                self._send_device(error_event("Too many events; some were dropped.", "rate_limit_exceeded",
                                              "rate_limit_error"))
            return
        self.core.on_device_message(raw, now)
        self._perform()

    def _on_peer_closed(self, reason: str) -> None:
        if self.end_reason is not None:
            return
        log.info("device side ended: %s", reason, extra=self._log)
        if self.core is not None:
            self.core.on_device_closed(self._loop.time())
            self._perform()
        self.end(reason)

    def tick(self, now: float) -> None:
        """The media clock's 20 ms tick: one frame of downlink audio to the track."""
        if self.end_reason is not None or self.core is None:
            return
        frame = self.core.pull_frame(now) if self._upstream_open else None
        if frame is None and self.config.dtx:
            # discontinuous transmission: a few silent frames after speech, then one every 400 ms
            self._idle_ticks += 1
            if self._idle_ticks > DTX_HANGOVER_TICKS and self._idle_ticks % DTX_KEEPALIVE_TICKS:
                self.track.skip()
                self.metrics.frames_out_dtx += 1
                self._was_idle = True
                return
        elif frame is not None:
            self._idle_ticks = 0
        payload = self._encoder.encode(frame)
        dropped = self.track.dropped
        self.track.push(payload)
        self.metrics.frames_out += 1
        self.metrics.frames_out_dropped += self.track.dropped - dropped
        if frame is None:
            self.metrics.frames_out_silent += 1
            self._was_idle = True
            if self._delta_mark is not None and time.perf_counter() - self._delta_mark > 0.5:
                self._delta_mark = None  # that audio was never played (muted by a barge-in)
        else:
            self._audio_frames_out += 1
            if self._delta_mark is not None:
                # first frame of a burst of audio: latency from the delta that started it
                self.metrics.downlink_latency.add(time.perf_counter() - self._delta_mark)
                self._delta_mark = None
            self._was_idle = False
        if self.core.has_actions:  # pull_frame may emit playback events (output_audio_buffer.*)
            self._perform()

    def clock_failed(self, exc: BaseException) -> None:
        self.end_with_error("internal_error", "Internal error; the call ended.")

    def _connect_deadline(self) -> None:
        if not self.peer.connected and self.end_reason is None:
            log.info("device did not connect within %.0f s", self.config.ice_connect_timeout_s, extra=self._log)
            self.end("ice_timeout")

    def _on_core_timer(self) -> None:
        self._core_timer = None
        self._core_deadline = None
        if self.end_reason is None and self.core is not None:
            self.core.on_timer(self._loop.time())
            self._perform()

    # -- actions ---------------------------------------------------------------
    def _perform(self) -> None:
        core = self.core
        assert core is not None
        for action in core.drain_actions():
            if isinstance(action, SendUpstream):
                if self.upstream is not None and self._upstream_open:
                    self.upstream.send(action.event)
            elif isinstance(action, SendDevice):
                self._send_device(action.event)
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

    def _arm_core_timer(self) -> None:
        if self.core is None or self.end_reason is not None:
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

    def _send_device(self, event: dict[str, Any]) -> None:
        self.metrics.dc_events_out += 1
        self.peer.send_event(orjson.dumps(event).decode())

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
            log.warning("server tool %s failed: %s", action.name, type(exc).__name__, extra=self._log)
            output = orjson.dumps({"error": f"tool failed: {type(exc).__name__}"}).decode()
        self._tool_done(action.call_id, output)

    def _tool_done(self, call_id: str, output: str) -> None:
        if self.end_reason is None and self.core is not None:
            self.core.on_tool_result(call_id, output, self._loop.time())
            self._perform()

    # -- end ---------------------------------------------------------------------
    def end_with_error(self, reason: str, message: str, type_: str = "server_error") -> None:
        """Tell the device why (an ``error`` event, delivered before the peer closes), then end."""
        if self.end_reason is None:
            self._send_device(error_event(message, reason, type_))
        self.end(reason)

    def end(self, reason: str) -> None:
        """End the call (idempotent, callable from any callback)."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self._clock.unregister(self)
        task = self._task
        if task is None:
            return
        if not task.done():
            # also from inside the task: it is cancelled at its next await (e.g. the upstream read)
            self._loop.call_soon(self._cancel_task)

    def _cancel_task(self) -> None:
        # never interrupt the teardown itself (it may already be running when this fires)
        if self._task is not None and not self._task.done() and not self._tearing_down:
            self._task.cancel()

    async def _teardown(self) -> None:
        self._tearing_down = True
        self.end_reason = self.end_reason or "ended"
        self._clock.unregister(self)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._core_timer is not None:
            self._core_timer.cancel()
            self._core_timer = None
        for task in list(self._tool_tasks):
            task.cancel()
        if self._tool_tasks:
            await asyncio.gather(*self._tool_tasks, return_exceptions=True)
        self._upstream_open = False
        try:
            if self.upstream is not None:
                await self.upstream.close()
        finally:
            # a last error event reaches the device, even one still connecting
            await self.peer.flush(timeout_s=0.5, await_channel_s=min(5.0, self.config.ice_connect_timeout_s))
            await self.peer.close()
            self._encoder.close()
            self.usage.ended_at = time.time()
            self.usage.output_audio_s = self._audio_frames_out * 0.02
            self.metrics.calls_ended += 1
            bump(self.metrics.calls_ended_by_reason, self.end_reason)
            log.info("call ended: %s", self.end_reason, extra=self._log)
            if self._usage_recorder is not None:
                try:
                    await self._usage_recorder(self, self.usage)
                except Exception:
                    log.exception("recording usage failed", extra=self._log)
            self._closed.set()
            self._on_finished(self)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()
