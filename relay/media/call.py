"""One call: a device's peer, the bridge's call core, and one upstream socket.

The I/O edge around ``relay.bridge.CallCore`` (see its docstring for the contract):

- the peer's uplink sink emits fixed-length chunks -> ``input_audio_buffer.append`` upstream;
- data-channel messages -> ``core.on_device_message``; upstream events -> ``core.on_upstream_event``;
- the per-worker media clock calls ``tick(now)`` -> ``core.pull_frame(now)`` -> encode -> the track;
- the core's actions are performed in order, synchronously (sends are queued, tools run in
  tasks the call owns) -- that machinery (upstream read loop and recycle, action performer, core
  timer, helper tasks) is ``relay.call.driver.CallDriver``, shared with the WebSocket edge;
- one timer handle for the core's next deadline, one for the connect timeout -- handles, not tasks.

Lifecycle: ``start(offer)`` answers and spawns the call's one task (upstream connect + read
loop). ``end(reason)`` may be called from anywhere (callbacks, the clock, the registry); the
task's ``finally`` tears everything down exactly once -- peer, upstream, timers, tool tasks,
clock registration -- and records usage. ``wait_closed()`` returns when that is done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from relay.bridge import CallCore, RunServerTool, append_json
from relay.bridge.core import error_event
from relay.call.driver import CallDriver
from relay.call.metrics import MediaMetrics, bump
from relay.call.ratelimit import TokenBucket
from relay.call.usage import CallUsage
from relay.media.clock import MediaClock
from relay.media.codecs import AudioCodec
from relay.media.downlink import DownlinkEncoder, EncodeJob, PacketTrack
from relay.media.liveness import DeviceLiveness
from relay.media.peer import Peer
from relay.media.uplink import UplinkSink
from relay.upstream import dialect as dl

log = logging.getLogger("relay.media")

__all__ = ["Call", "CallConfig", "Upstream"]

DTX_HANGOVER_TICKS = 5  # silent frames still sent after audio (lets the device's decoder fade out)
DTX_KEEPALIVE_TICKS = 20  # during DTX, one silent frame every 400 ms
#: data-channel labels whose devices are answered in GA until they speak (OpenAI's WebRTC clients)
GA_CHANNEL_LABELS = frozenset({"oai-events"})
MESSAGE_TOO_LARGE_STRIKES = 3  # oversized data-channel messages a device may send before it loses the call
PRECONNECT_CHUNKS_MAX = 25  # uplink chunks kept while the upstream connects (1 s at 40 ms)


class Upstream(Protocol):
    """What the call needs of ``relay.call.upstream.UpstreamClient``."""

    close_reason: str | None

    async def connect(self) -> None: ...

    def send(self, event: dict[str, Any]) -> bool: ...

    def send_json(self, data: bytes) -> bool: ...  # an event already serialised (the uplink's appends)

    def events(self) -> Any: ...  # async iterator of dict events

    async def close(self) -> None: ...


@dataclass(frozen=True)
class CallConfig:
    """The media knobs of a call (from settings)."""

    uplink_chunk_ms: int = 40
    opus_complexity: int = 5
    playout_trim_above_ms: int = 20  # relay.bridge.trim: a real-time stream's standing delay above this goes
    opus_bitrate_bps: int = 32000
    dc_queue_max: int = 256
    dc_max_buffered_bytes: int = 1 << 20
    device_events_per_s: float = 50.0
    ice_public_ip: str = ""
    ice_port_range: tuple[int, int] | None = None
    ice_mux: Any = None  # the worker's relay.media.mux.IceMux (one ICE port for every call), or None
    dtx: bool = False
    ice_connect_timeout_s: float = 15.0
    max_call_s: float = 3600.0  # enforced by the core's deadline (device gets an error event first)
    recycle_after_s: float | None = 3300.0
    device_event_max_bytes: int = 256 * 1024
    upstream_slow_notice_s: float = 2.0
    device_liveness_timeout_s: float = 4.0  # connected, then nothing from the device this long: device_lost


class Call(CallDriver):
    _logger = log

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
        on_connected: Callable[[Call], None] = lambda call: None,
        max_playback_hz: int | None = None,
        downlink_fec: bool = False,
    ) -> None:
        super().__init__(call_id=call_id, device=device, upstream_factory=upstream_factory,
                         tool_runner=tool_runner, usage_recorder=usage_recorder, on_finished=on_finished,
                         audio_format=codec.upstream_format)
        self.codec = codec
        self.config = config
        self.upstream_slow_notice_s = config.upstream_slow_notice_s
        self.metrics = metrics
        self._clock = clock
        self.upstream: Upstream | None = None
        self._preconnect: deque[bytes] = deque(maxlen=PRECONNECT_CHUNKS_MAX)
        self._task: asyncio.Task[None] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._tearing_down = False
        self._event_bucket = TokenBucket(config.device_events_per_s, burst=config.device_events_per_s)
        self._audio_frames_out = 0
        self._messages_refused = 0
        self._never_connected = False
        self._liveness: DeviceLiveness | None = None
        self._seen_packets = -1
        self._seen_at = 0.0  # loop time of the last sign of life from the device
        self._seen_at_wall = 0.0  # the same, wall clock (what usage is billed to)
        self._liveness_due = 0.0  # loop time the next liveness check is due
        # downlink latency: when the first audio delta after an idle stretch arrived; matched with
        # the first frame that leaves for the device (dropped if that audio never plays, e.g. muted)
        self._delta_mark: float | None = None
        self._was_idle = True
        self._idle_ticks = 0
        self._encoder = DownlinkEncoder(codec, complexity=clock.complexity_for(config.opus_complexity),
                                        bitrate_bps=config.opus_bitrate_bps, max_playback_hz=max_playback_hz,
                                        fec=downlink_fec)
        self.track = PacketTrack(self._encoder, metrics=metrics)
        self.sink = UplinkSink(codec, chunk_ms=config.uplink_chunk_ms, on_chunk=self._on_uplink_chunk,
                               metrics=metrics)
        self.peer = Peer(codec=codec, track=self.track, sink=self.sink, metrics=metrics,
                         on_message=self._on_device_message, on_closed=self._on_peer_closed,
                         on_first_channel=self._on_first_channel,
                         on_connected=lambda: on_connected(self),
                         dc_queue_max=config.dc_queue_max, dc_max_buffered_bytes=config.dc_max_buffered_bytes,
                         dc_max_message_bytes=config.device_event_max_bytes,
                         on_message_refused=self._on_message_refused,
                         public_ip=config.ice_public_ip, port_range=config.ice_port_range, mux=config.ice_mux,
                         log_extra=self._log)

    # -- start ---------------------------------------------------------------
    async def start(self, offer_sdp: str) -> str:
        """Answer the offer and start the call. Raises ``OfferError``; then nothing is left running."""
        try:
            answer = await self.peer.answer(offer_sdp)
            self.core = CallCore(self.device.assistant, now=self._loop.time(),
                                 audio_format=self.codec.upstream_format, max_call_s=self.config.max_call_s,
                                 recycle_after_s=self.config.recycle_after_s,
                                 trim_above_ms=self.config.playout_trim_above_ms,
                                 device_event_max_bytes=self.config.device_event_max_bytes, log_id=self.id)
        except BaseException:
            await self.peer.close()  # idempotent: answer() already closed it if it failed there
            self._encoder.close()
            self._closed.set()
            raise
        self._clock.register(self)
        self._timers.append(self._loop.call_later(self.config.ice_connect_timeout_s, self._connect_deadline))
        if self.peer.pc is not None and self.config.device_liveness_timeout_s > 0:
            self._liveness = DeviceLiveness(self.peer.pc)
            self._liveness_due = self._loop.time()
            self._liveness_check()
        self._arm_core_timer()
        self.metrics.calls_started += 1
        self._task = self._loop.create_task(self._run(), name=f"call {self.id}")
        log.info("call started (codec %s, upstream format %s)", self.codec.name, self.codec.upstream_format,
                 extra=self._log)
        return answer

    # -- the call's task -------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._upstream_session()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("call failed", extra=self._log)
            if self.end_reason is None:
                self._send_device(error_event("Internal error; the call ended.", code="internal_error",
                                              etype="server_error"))
                self.end_reason = "internal_error"
        finally:
            await self._teardown()

    # -- CallDriver hooks --------------------------------------------------------
    def _on_upstream_connect_failed(self, exc: Exception) -> None:
        self.metrics.upstream_connect_failures += 1
        log.warning("upstream connect failed: %s", exc, extra=self._log)
        self._send_device(error_event(f"The assistant is unavailable: {exc}", code="upstream_unavailable",
                                      etype="server_error"))
        self.end("upstream_unavailable")

    def _on_upstream_ready(self, upstream: Any) -> None:
        while self._preconnect:
            upstream.send_json(append_json(self._preconnect.popleft()))

    def _on_upstream_event_seen(self, event: dict[str, Any]) -> None:
        if self._was_idle and self._delta_mark is None and \
                event.get("type") in ("response.audio.delta", "response.output_audio.delta"):
            self._delta_mark = time.perf_counter()

    def _count(self, metric: str) -> None:
        setattr(self.metrics, metric, getattr(self.metrics, metric) + 1)

    def _send_device(self, event: dict[str, Any]) -> None:
        self.metrics.dc_events_out += 1
        self.peer.send_event(orjson.dumps(event).decode())

    def _on_first_channel(self, label: str) -> None:
        """The device's first data channel opened: its label is the first guess of its dialect
        (``GA_CHANNEL_LABELS``: GA, anything else: beta); events queued for it so far are
        rewritten in that dialect. The shape of the device's events still decides afterwards."""
        core = self.core
        if core is None or label not in GA_CHANNEL_LABELS or core.device_dialect == dl.GA:
            return
        core.device_dialect = dl.GA
        log.info("data channel %r: the device is answered in GA", label, extra=self._log)

        def to_ga(text: str) -> list[str]:
            return [orjson.dumps(ev).decode() for ev in dl.translate(orjson.loads(text), dl.BETA, dl.GA)]

        self.peer.rewrite_pending(to_ga)

    # -- inputs ----------------------------------------------------------------
    def checkpoint_usage(self, now_wall: float) -> CallUsage:
        """Usage so far, billed to the device's last sign of life (what a device_lost end bills)."""
        until = self._seen_at_wall if self._liveness is not None and self._seen_at_wall else now_wall
        return dataclasses.replace(self.usage, ended_at=max(min(until, now_wall), self.usage.started_at),
                                   output_audio_s=self._audio_frames_out * 0.02)

    def _on_uplink_chunk(self, chunk: bytes, arrival_s: float) -> None:
        if self.end_reason is not None:
            return
        self.meter.input(len(chunk))
        if not self._upstream_open or self.upstream is None:
            self._preconnect.append(chunk)
            return
        self.upstream.send_json(append_json(chunk))
        self.metrics.uplink_latency.add(time.perf_counter() - arrival_s)

    def _on_device_message(self, raw: str | bytes) -> None:
        if self.end_reason is not None or self.core is None:
            return
        self.metrics.dc_events_in += 1
        now = self._loop.time()
        if not self._event_bucket.allow(now):
            self.metrics.dc_events_refused += 1
            self._flood_notice(now, "Too many events; some were dropped.")
            return
        self.core.on_device_message(raw, now)
        self._perform()

    def _on_message_refused(self, size: int) -> None:
        """A data-channel message passed the limit while SCTP reassembled it (dropped unread)."""
        if self.end_reason is not None:
            return
        self.metrics.dc_messages_too_large += 1
        self._messages_refused += 1
        limit = self.config.device_event_max_bytes
        if self._messages_refused >= MESSAGE_TOO_LARGE_STRIKES:
            log.warning("device sent %d messages over %d bytes; ending the call", self._messages_refused, limit,
                        extra=self._log)
            self.end_with_error("message_too_large",
                                f"Repeated messages over the limit of {limit} bytes (a=max-message-size); "
                                "the call ended.", "invalid_request_error")
            return
        self._send_device(error_event(f"Message of more than {limit} bytes (a=max-message-size) refused; "
                                      "it was dropped.", code="message_too_large"))

    def _on_peer_closed(self, reason: str) -> None:
        if self.end_reason is not None:
            return
        log.info("device side ended: %s", reason, extra=self._log)
        # the peer's reason (ice_failed, dtls_failed, sctp_failed, ...) is the call's end reason: set it
        # before the core's generic EndCall("device_closed") is performed
        self.end(reason)
        if self.core is not None:
            self.core.on_device_closed(self._loop.time())
            self._perform()

    def tick(self, now: float) -> EncodeJob | None:
        """The media clock's 20 ms tick: one frame of downlink audio for the track.

        On the loop: pull the frame, DTX, the quiet gate. A frame needing a libopus encode is
        returned as an ``EncodeJob`` (the clock encodes it on its encode thread and calls
        ``_send_frame`` with the payload); any other payload is sent here and now.
        """
        if self.end_reason is not None or self.core is None:
            return None
        frame = self.core.pull_frame(now) if self._upstream_open else None
        if self.core.has_actions:  # pull_frame may emit playback events (output_audio_buffer.*)
            self._perform()
        if frame is None and self.config.dtx:
            # discontinuous transmission: a few silent frames after speech, then one every 400 ms
            # (only once the encoder has drained and reset: relay.media.downlink, "in step")
            self._idle_ticks += 1
            if self._idle_ticks > DTX_HANGOVER_TICKS and self._idle_ticks % DTX_KEEPALIVE_TICKS \
                    and self._encoder.settled:
                self.track.skip()
                self.metrics.frames_out_dtx += 1
                self._was_idle = True
                return None
        elif frame is not None:
            self._idle_ticks = 0
        payload = self._encoder.prepare(frame)
        if payload is None:  # a live encode: audio, or (None) a frame of the encoder's drain
            return self._encoder.job(frame, self._send_audio if frame is not None else self._send_silence)
        self._send_frame(payload, frame is not None)
        return None

    def _send_audio(self, payload: bytes) -> None:
        """An encoded frame of audio back from the encode thread (on the loop)."""
        if self.end_reason is None:
            self._send_frame(payload, True)

    def _send_silence(self, payload: bytes) -> None:
        """An encoded frame of the encoder's drain (silence after audio) back from the encode thread."""
        if self.end_reason is None:
            self._send_frame(payload, False)

    def _send_frame(self, payload: bytes, audio: bool) -> None:
        dropped = self.track.dropped
        self.track.push(payload)
        self.metrics.frames_out += 1
        self.metrics.frames_out_dropped += self.track.dropped - dropped
        if not audio:
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

    def clock_failed(self, exc: BaseException) -> None:
        self.end_with_error("internal_error", "Internal error; the call ended.")

    def _connect_deadline(self) -> None:
        if not self.peer.connected and self.end_reason is None:
            reason = self.peer.connect_timeout_reason()
            log.info("device did not connect within %.0f s (%s)", self.config.ice_connect_timeout_s, reason,
                     extra=self._log)
            self._never_connected = True  # nothing to wait for at teardown: it cannot hear us
            self.end(reason)

    def _liveness_check(self) -> None:
        """Every 1/8 of the liveness timeout: has anything arrived from the device since the last look?"""
        if self.end_reason is not None or self._liveness is None:
            return
        timeout_s = self.config.device_liveness_timeout_s
        now = self._loop.time()
        packets = self._liveness.packets()
        # a check running late means the loop stalled: datagrams may still wait in aiortc's queues
        # (counted when its DTLS task runs), so a stall is not taken for the device's silence
        stalled = now - self._liveness_due > timeout_s / 8
        if packets != self._seen_packets or not self.peer.connected or stalled:
            self._seen_packets, self._seen_at, self._seen_at_wall = packets, now, time.time()
        elif now - self._seen_at >= timeout_s:
            log.info("nothing from the device for %.1f s; it is gone", now - self._seen_at, extra=self._log)
            self.usage.ended_at = self._seen_at_wall  # billed to its last sign of life
            self.end_with_error("device_lost", f"Nothing arrived from the device for {timeout_s:g} s; "
                                               "the call ended.")
            return
        self._liveness_due = now + timeout_s / 8
        self._timers.append(self._loop.call_at(self._liveness_due, self._liveness_check))
        if len(self._timers) > 16:
            self._timers = [h for h in self._timers if not h.cancelled() and h.when() > now]

    # -- end ---------------------------------------------------------------------
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
        self._cancel_core_timer()
        await self._stop_tasks()
        self._upstream_open = False
        try:
            if self.upstream is not None:
                await self.upstream.close()
        finally:
            # a last error event reaches the device, even one still connecting
            await self.peer.flush(timeout_s=0.5, await_channel_s=0.0 if self._never_connected else
                                  min(5.0, self.config.ice_connect_timeout_s))
            await self.peer.close()
            self._encoder.close()
            self.usage.ended_at = self.usage.ended_at or time.time()
            self.usage.output_audio_s = self._audio_frames_out * 0.02
            if self.core is not None:
                self.metrics.frames_out_trimmed += self.core.trimmed_frames
                self.metrics.upstream_events_invalid += self.core.upstream_events_invalid
                self.metrics.dc_events_policy_refused += self.core.refused_events
            self.metrics.calls_ended += 1
            bump(self.metrics.calls_ended_by_reason, self.end_reason)
            log.info("call ended: %s", self.end_reason, extra=self._log)
            await self._record_usage()
            self._closed.set()
            self._on_finished(self)
