"""One simulated device for the load tester: a RelayClient plus marker bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import fastpath
from bench.audio import BenchAudio
from bench.markers import MarkerDetector, MarkerMatcher
from bench.short import ShortTracker
from relay.client import ConnectError, OpusPacketTrack, RelayClient, RelayError

log = logging.getLogger("bench.device")

DECODE_RATE_HZ = 48000  # libopus decodes at 48 kHz; the detector decimates by 2 itself


@dataclass
class DeviceConfig:
    base_url: str
    client_id: str
    client_secret: str | None
    demo: bool = False
    assistant_id: str | None = None
    create_session: bool = True
    marker_timeout_s: float = 1.0
    connect_timeout_s: float = 10.0
    # where this device's audio starts: a delay before its first frame (0..20 ms, the phase within
    # a frame) and a packet index into the looped audio (``bench.runner.start_points``)
    phase_s: float = 0.0
    start_index: int = 0
    workload: str = "loopback"  # loopback | echo | short (short: track the assistant's chimes)
    # audio on relay's compiled paths (bench.fastpath) rather than aiortc's per-packet Python
    fast: bool = True


@dataclass
class DeviceResult:
    index: int
    ok: bool = False
    error: str = ""
    started_s: float = 0.0
    setup_ms: float | None = None  # session + SDP round trips (what the relay costs)
    session_ms: float | None = None
    sdp_ms: float | None = None
    offer_ms: float | None = None
    connect_ms: float | None = None
    phase_ms: float = 0.0
    start_index: int = 0
    frames_sent: int = 0  # uplink: frames this device sent
    # downlink (what relay sent this device), from the first packet heard to the last: see bench/README.md
    frames_received: int = 0  # distinct packets (duplicates left out)
    frames_expected: int = 0  # sequence numbers spanned: received + lost
    frames_lost: int = 0  # sequence numbers never heard
    frames_duplicates: int = 0
    frames_declared_gap: int = 0  # frames the sender skipped and said so (RTP timestamp jump: DTX)
    frames_missing: int = 0  # 20 ms wall-clock slots covered by no sequence number and no declared gap
    frames_delayed: int = 0  # > 100 ms behind the stream's schedule, then caught up (a stall and a burst)
    max_delay_ms: float = 0.0
    max_gap_ms: float = 0.0
    holes_over_100ms: int = 0
    unexplained_holes: int = 0  # 1 if a hole > 120 ms happened with no lost/missing/delayed/declared frame
    send_resyncs: int = 0
    events: int = 0
    markers_due: int = 0
    markers_lost: int = 0
    markers_spurious: int = 0
    marker_rtts_ms: list[float] = field(default_factory=list)
    # short workload only (None otherwise): chimes owed / of those heard / never heard / heard without their
    # first frame / heard but matching no response.done
    short_due: int | None = None
    short_heard: int | None = None
    short_lost: int | None = None
    short_without_first_frame: int | None = None
    short_unmatched: int | None = None
    short_latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def account_downlink(r: DeviceResult, st: Any) -> None:
    """The device's downlink fields from its receive statistics (``relay.client.ReceiveStats``).

    Every 20 ms wall-clock slot between the first and the last arrival is one of: a frame received,
    lost (a sequence gap), declared skipped (an RTP timestamp jump: DTX) or missing (none of these:
    the sender's clock skipped it); so received <= expected, and a long hole in arrivals is always
    explained by lost, declared, missing or delayed frames (a stall followed by a burst)."""
    r.frames_received, r.frames_expected, r.frames_lost = st.distinct, st.expected, st.lost
    r.frames_duplicates = st.packets - st.distinct
    r.frames_declared_gap = st.declared_gap_frames
    r.frames_delayed, r.max_delay_ms = st.delayed, round(st.max_delay_ms, 1)
    r.max_gap_ms, r.holes_over_100ms = round(st.max_gap_ms, 1), st.holes_over_100ms
    if st.first_arrival_s is not None and st.last_arrival_s is not None:
        slots = round((st.last_arrival_s - st.first_arrival_s) / 0.02) + 1
        r.frames_missing = max(0, slots - st.expected - st.declared_gap_frames)
    explained = r.frames_lost or r.frames_missing or r.frames_delayed or r.frames_declared_gap
    r.unexplained_holes = int(r.max_gap_ms > 120.0 and not explained)


class PhasedPacketTrack(OpusPacketTrack):
    """The looped packet list, started at ``start_index`` and ``phase_s`` after the track's first pull.

    A real device starts talking at any point of its 20 ms frame and of what it says; with every
    simulated device at packet 0 and the same phase, relay's tick sees the calls' speech and pauses
    in step (full encode batches, then empty ticks), which a real population never gives it.
    """

    def __init__(
        self, packets: list[bytes], *, phase_s: float = 0.0, start_index: int = 0, on_sent: Any = None
    ) -> None:
        super().__init__(packets, loop=True, on_sent=on_sent)
        if not 0.0 <= phase_s < 1.0:
            raise ValueError("phase_s must be in [0, 1) s")
        self.phase_s = phase_s
        self.start_index = start_index % len(self.packets) if self.packets else 0
        self._pos = self.start_index

    async def recv(self) -> Any:
        if self._start_s is None and self.phase_s > 0.0:
            await asyncio.sleep(self.phase_s)
        return await super().recv()


class Device:
    def __init__(self, index: int, cfg: DeviceConfig, audio: BenchAudio) -> None:
        self.index = index
        self.cfg = cfg
        self.audio = audio
        self.result = DeviceResult(index)
        self.matcher = MarkerMatcher(timeout_s=cfg.marker_timeout_s)
        rate_hz = fastpath.DECODE_RATE_HZ if cfg.fast else DECODE_RATE_HZ
        self.detector = MarkerDetector(rate_hz)
        self.short = ShortTracker(rate_hz) if cfg.workload == "short" else None
        # decode only what something listens to: the markers (loopback) or the chimes (short)
        self.decoder = fastpath.Pcm16Decoder() if cfg.fast and (audio.marker_frames or self.short) else None
        self.sender: fastpath.DirectSender | None = None
        self._clock: fastpath.SendClock | None = None
        self.packets_seen = 0  # fast path: downlink packets handed to _on_packet (either way they came)
        self.direct_rx: fastpath.DirectReceiver | None = None
        self.client = RelayClient(
            cfg.base_url,
            cfg.client_id,
            cfg.client_secret,
            demo=cfg.demo,
            assistant_id=cfg.assistant_id,
            host_addresses=["127.0.0.1"],
        )
        self.track: PhasedPacketTrack | fastpath.IdleTrack = (
            fastpath.IdleTrack()
            if cfg.fast
            else PhasedPacketTrack(
                audio.packets, phase_s=cfg.phase_s, start_index=cfg.start_index, on_sent=self._on_sent
            )
        )
        self.result.phase_ms = round(cfg.phase_s * 1000.0, 3)
        self.result.start_index = cfg.start_index % len(audio.packets) if audio.packets else 0

    def _on_packet(self, seq: int, payload_type: int, payload: bytes, arrival_s: float, rtp_ts: int) -> None:
        """Fast path: one downlink RTP packet, parsed by relay's kernel; counted, decoded if needed."""
        self.packets_seen += 1
        receiver = self.client.receiver
        if receiver is not None:
            receiver.handle_packet(seq, payload_type, payload, arrival_s, rtp_ts)
        if self.decoder is not None:
            pcm = self.decoder.decode(payload)
            if pcm is not None:
                self._on_audio(pcm, self.decoder.rate_hz, arrival_s)

    def _start_fast_media(self) -> None:
        pts = {pt for pt, name in (self.client.receiver.payload_types if self.client.receiver else {}).items()
               if name == "opus"}
        if not pts or self.client.pc is None:
            raise ValueError("the answer has no Opus payload type")
        self.direct_rx = fastpath.DirectReceiver(self.client.pc, pts, self._on_packet)
        self.sender = fastpath.DirectSender(
            self.client.pc, min(pts), self.audio.packets, start_index=self.cfg.start_index, on_sent=self._on_sent
        )
        self._clock = fastpath.SendClock.for_loop()
        self._clock.add(self.sender, self.cfg.phase_s)

    def _on_sent(self, index: int, t_s: float) -> None:
        kind = self.audio.marker_frames.get(index)
        if kind is not None:
            self.matcher.on_sent(t_s, kind)
        if self.short is not None and index in self.audio.turn_end_frames:
            self.short.on_turn_end(t_s)

    def _on_audio(self, pcm: Any, rate_hz: int, arrival_s: float) -> None:
        if self.audio.marker_frames:
            kind = self.detector.feed(pcm, arrival_s)
            if kind is not None:
                self.matcher.on_detected(arrival_s, kind)
        if self.short is not None:
            st = self.client.receiver.stats if self.client.receiver else None
            self.short.on_frame(pcm, arrival_s, st.packets if st is not None else 0)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.result.events += 1
        if self.short is not None:
            self.short.on_event(event, time.monotonic())

    async def start(self) -> None:
        """Set the call up; errors are recorded, never raised."""
        r = self.result
        r.started_s = time.monotonic()
        try:
            if self.cfg.create_session:
                await self.client.create_session(["text", "audio"])
            await self.client.connect(
                audio_source=self.track,
                on_audio=None if self.cfg.fast else self._on_audio,
                decode_audio=not self.cfg.fast,
                on_event=self._on_event,
                audio_rate_hz=DECODE_RATE_HZ,
                timeout_s=self.cfg.connect_timeout_s,
            )
            if self.cfg.fast:
                self._start_fast_media()
        except (RelayError, ConnectError, OSError, TimeoutError, ValueError, RuntimeError) as exc:
            r.error = f"{type(exc).__name__}: {exc}"[:300]
            log.debug("device %d failed: %s", self.index, r.error)
            return
        t = self.client.timings
        r.session_ms, r.sdp_ms, r.offer_ms, r.connect_ms = t.session_ms, t.sdp_ms, t.offer_ms, t.connect_ms
        r.setup_ms = (t.session_ms or 0.0) + (t.sdp_ms or 0.0)
        r.ok = True

    async def stop(self) -> DeviceResult:
        r = self.result
        now = time.monotonic()
        if self.sender is not None and self._clock is not None:
            self._clock.remove(self.sender)
        if r.ok:
            st = self.client.receiver.stats if self.client.receiver else None
            counter = self.sender if self.sender is not None else self.track
            r.frames_sent = getattr(counter, "frames_sent", 0)
            r.send_resyncs = getattr(counter, "resyncs", 0)
            if st is not None:
                account_downlink(r, st)
            r.markers_due = self.matcher.due(now)
            r.markers_lost = self.matcher.lost(now)
            r.markers_spurious = self.matcher.spurious
            r.marker_rtts_ms = [round(x, 2) for x in self.matcher.rtts_ms]
            if self.short is not None:
                sm = self.short.summary(now)
                r.short_due, r.short_heard, r.short_lost = sm["owed"], sm["heard"], sm["lost"]
                r.short_without_first_frame, r.short_unmatched = sm["without_first_frame"], sm["unmatched"]
                r.short_latencies_ms = list(self.short.latencies_ms)
        try:
            await asyncio.wait_for(self.client.hangup(), 10)
        except TimeoutError:
            log.warning("device %d: hangup timed out", self.index)
        if self.decoder is not None:
            self.decoder.close()
        return r
