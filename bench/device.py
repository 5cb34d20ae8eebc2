"""One simulated device for the load tester: a RelayClient plus marker bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

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
    frames_sent: int = 0
    frames_received: int = 0
    frames_lost: int = 0
    frames_missing: int = 0  # by wall clock: 20 ms slots between first and last arrival with no packet
    max_gap_ms: float = 0.0
    send_resyncs: int = 0
    events: int = 0
    markers_due: int = 0
    markers_lost: int = 0
    markers_spurious: int = 0
    marker_rtts_ms: list[float] = field(default_factory=list)
    # short workload only (None otherwise): chimes owed / heard / never heard / heard without their first frame
    short_due: int | None = None
    short_heard: int | None = None
    short_lost: int | None = None
    short_without_first_frame: int | None = None
    short_latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        self.detector = MarkerDetector(DECODE_RATE_HZ)
        self.short = ShortTracker(DECODE_RATE_HZ) if cfg.workload == "short" else None
        self.client = RelayClient(
            cfg.base_url,
            cfg.client_id,
            cfg.client_secret,
            demo=cfg.demo,
            assistant_id=cfg.assistant_id,
            host_addresses=["127.0.0.1"],
        )
        self.track = PhasedPacketTrack(
            audio.packets, phase_s=cfg.phase_s, start_index=cfg.start_index, on_sent=self._on_sent
        )
        self.result.phase_ms = round(cfg.phase_s * 1000.0, 3)
        self.result.start_index = self.track.start_index

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
            self.short.on_frame(pcm, arrival_s)

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
                on_audio=self._on_audio,
                on_event=self._on_event,
                audio_rate_hz=DECODE_RATE_HZ,
                timeout_s=self.cfg.connect_timeout_s,
            )
        except (RelayError, ConnectError, OSError, TimeoutError, ValueError) as exc:
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
        if r.ok:
            st = self.client.receiver.stats if self.client.receiver else None
            r.frames_sent = self.track.frames_sent
            r.send_resyncs = self.track.resyncs
            if st is not None:
                r.frames_received, r.frames_lost, r.max_gap_ms = st.packets, st.lost, st.max_gap_ms
                if st.first_arrival_s is not None and st.last_arrival_s is not None:
                    slots = round((st.last_arrival_s - st.first_arrival_s) / 0.02) + 1
                    r.frames_missing = max(0, slots - st.packets - st.declared_gap_frames)
            r.markers_due = self.matcher.due(now)
            r.markers_lost = self.matcher.lost(now)
            r.markers_spurious = self.matcher.spurious
            r.marker_rtts_ms = [round(x, 2) for x in self.matcher.rtts_ms]
            if self.short is not None:
                sh = self.short
                r.short_due, r.short_heard, r.short_lost = sh.due(now), sh.heard, sh.lost(now)
                r.short_without_first_frame = sh.heard_without_first_frame
                r.short_latencies_ms = list(sh.latencies_ms)
        try:
            await asyncio.wait_for(self.client.hangup(), 10)
        except TimeoutError:
            log.warning("device %d: hangup timed out", self.index)
        return r
