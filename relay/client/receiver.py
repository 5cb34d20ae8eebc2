"""What a simulated device hears: RTP packets tapped before aiortc's jitter buffer.

:class:`AudioReceiver` replaces the receiver's packet handler, so each RTP
packet is counted (sequence gaps = lost frames) and, if asked, decoded right
away in the event loop and handed to a callback and/or a bounded queue. It
deliberately bypasses aiortc's jitter buffer and decoder thread: arrival times
are the network's, not a playout buffer's, and no decoding happens off the loop (aiortc still
starts its decoder thread, which is never fed and stays idle).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from relay.client.codec import PacketDecoder
from relay.media.compat.sdk import tap_rtp

log = logging.getLogger("relay.client.media")

# on_audio(pcm16 mono int16 array, rate_hz, arrival monotonic seconds)
OnAudio = Callable[[np.ndarray, int, float], None]


@dataclass
class ReceiveStats:
    packets: int = 0
    payload_bytes: int = 0
    lost: int = 0
    duplicates_or_late: int = 0
    first_arrival_s: float | None = None
    last_arrival_s: float | None = None
    max_gap_ms: float = 0.0
    # 20 ms frames the sender declared as not sent (RTP timestamp jumps, e.g. DTX during silence)
    declared_gap_frames: int = 0
    late_recovered: int = 0  # packets counted lost, then arrived late (no longer lost)
    holes_over_100ms: int = 0  # arrival holes longer than 100 ms (five frames)
    # frames that arrived > 100 ms behind the stream's own schedule (first arrival + RTP timestamp) and
    # the stream then caught up: a sender that stalled and sent its late frames in a burst
    delayed: int = 0
    max_delay_ms: float = 0.0
    queue_dropped: int = 0
    decode_errors: int = 0
    codec: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def distinct(self) -> int:
        """Packets of the stream counted once (duplicates left out, late arrivals in)."""
        return self.packets - self.duplicates_or_late + self.late_recovered

    @property
    def expected(self) -> int:
        """Sequence numbers from the first packet heard to the highest: ``distinct + lost``."""
        return self.distinct + self.lost

    def as_dict(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "payload_bytes": self.payload_bytes,
            "lost": self.lost,
            "duplicates_or_late": self.duplicates_or_late,
            "max_gap_ms": round(self.max_gap_ms, 1),
            "declared_gap_frames": self.declared_gap_frames,
            "delayed": self.delayed,
            "max_delay_ms": round(self.max_delay_ms, 1),
            "queue_dropped": self.queue_dropped,
            "decode_errors": self.decode_errors,
            "codec": self.codec,
        }


HOLE_MS = 100.0
DELAY_S = 0.1  # behind the stream's schedule by more than this: a delayed frame
ON_TIME_S = 0.02
REBASE_FRAMES = 50  # behind for this long (1 s): the schedule moved (skipped ticks), not a burst to come


class _Schedule:
    """Each frame's delay behind the stream's own schedule: arrival - RTP timestamp / clock rate, against
    the smallest such offset so far (the on-time baseline). A stretch of frames more than ``DELAY_S``
    behind that ends with the stream on time again (a stall, then a burst) counts them ``delayed``; one
    that stays behind for ``REBASE_FRAMES`` is a new baseline (the sender skipped ticks without saying
    so in its timestamps: what ``missing`` counts), not delay."""

    def __init__(self) -> None:
        self.last_ts: int | None = None
        self.ts_ext = 0  # RTP timestamp since the first packet, unwrapped
        self.base: float | None = None
        self.run = 0
        self.run_min = float("inf")
        self.pending = 0
        self.pending_max = 0.0

    def feed(self, st: ReceiveStats, rtp_ts: int, arrival_s: float, clock_hz: int) -> None:
        if self.last_ts is not None:
            self.ts_ext += (rtp_ts - self.last_ts) & 0xFFFFFFFF
        self.last_ts = rtp_ts
        offset = arrival_s - self.ts_ext / clock_hz
        if self.base is None or offset < self.base:
            self.base = offset
        behind = offset - self.base
        if behind <= ON_TIME_S:
            if self.pending:
                st.delayed += self.pending
                st.max_delay_ms = max(st.max_delay_ms, self.pending_max * 1000.0)
            self.run, self.run_min, self.pending, self.pending_max = 0, float("inf"), 0, 0.0
            return
        self.run += 1
        self.run_min = min(self.run_min, offset)
        if behind > DELAY_S:
            self.pending += 1
            self.pending_max = max(self.pending_max, behind)
        if self.run >= REBASE_FRAMES:
            self.base = self.run_min
            self.run, self.run_min, self.pending, self.pending_max = 0, float("inf"), 0, 0.0


class AudioReceiver:
    """Counts and optionally decodes the audio relay sends to this device.

    ``decode``: decode each packet (Opus/PCMU/PCMA) to mono int16 at ``rate_hz``.
    ``on_audio``: called with every decoded frame. ``queue_frames``: if > 0,
    decoded frames also go to ``self.queue`` (bounded; the oldest is dropped
    when full and counted in ``stats.queue_dropped``).
    """

    def __init__(
        self, *, decode: bool = True, rate_hz: int = 48000, on_audio: OnAudio | None = None, queue_frames: int = 0
    ) -> None:
        self.decode = decode
        self.rate_hz = rate_hz
        self.on_audio = on_audio
        self.queue: asyncio.Queue[tuple[np.ndarray, float]] | None = (
            asyncio.Queue(maxsize=queue_frames) if queue_frames > 0 else None
        )
        self.stats = ReceiveStats()
        self.payload_types: dict[int, str] = {}
        self._decoders: dict[int, PacketDecoder] = {}
        self._highest_seq: int | None = None
        self._last_ts: int | None = None
        self._schedule = _Schedule()

    def _ts_per_frame(self, payload_type: int) -> int:
        """RTP timestamp ticks of one 20 ms frame: Opus runs a 48 kHz RTP clock, G.711 8 kHz."""
        return 960 if self.payload_types.get(payload_type, "opus") == "opus" else 160

    def attach(self, receiver: Any) -> None:
        """Install on an ``aiortc.RTCRtpReceiver`` (before packets flow)."""
        tap_rtp(receiver, self._handle_rtp_packet)

    def set_payload_types(self, payload_types: dict[int, str]) -> None:
        self.payload_types = {pt: name.lower() for pt, name in payload_types.items()}

    async def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int = 0) -> None:
        self.handle_packet(
            packet.sequence_number, packet.payload_type, packet.payload, time.monotonic(), packet.timestamp
        )

    def handle_packet(
        self, seq: int, payload_type: int, payload: bytes, arrival_s: float, rtp_ts: int | None = None
    ) -> None:
        """Account one RTP packet (public for tests: no network needed)."""
        st = self.stats
        st.packets += 1
        st.payload_bytes += len(payload)
        if st.last_arrival_s is not None:
            gap_ms = (arrival_s - st.last_arrival_s) * 1000.0
            st.max_gap_ms = max(st.max_gap_ms, gap_ms)
            if gap_ms > HOLE_MS:
                st.holes_over_100ms += 1
        else:
            st.first_arrival_s = arrival_s
        st.last_arrival_s = arrival_s
        if self._highest_seq is None:
            self._highest_seq = seq
        else:
            delta = (seq - self._highest_seq) & 0xFFFF
            if delta == 0 or delta >= 0x8000:
                st.duplicates_or_late += 1
                if st.lost > 0 and delta != 0:
                    st.lost -= 1  # a late packet we had counted as lost
                    st.late_recovered += 1
            else:
                st.lost += delta - 1
                self._highest_seq = seq
                if rtp_ts is not None and self._last_ts is not None:
                    # a timestamp step of more than one frame per packet: the sender skipped frames on purpose
                    step = (rtp_ts - self._last_ts) & 0xFFFFFFFF
                    frame_ticks = self._ts_per_frame(payload_type)
                    if 0 < step < 0x80000000 and frame_ticks:
                        st.declared_gap_frames += max(0, round(step / frame_ticks) - delta)
        if rtp_ts is not None and (self._last_ts is None or ((rtp_ts - self._last_ts) & 0xFFFFFFFF) < 0x80000000):
            self._last_ts = rtp_ts
            self._schedule.feed(st, rtp_ts, arrival_s, self._ts_per_frame(payload_type) * 50)
        if not self.decode:
            return
        name = self.payload_types.get(payload_type, "opus")
        st.codec = name
        decoder = self._decoders.get(payload_type)
        if decoder is None:
            decoder = self._decoders[payload_type] = PacketDecoder(name, self.rate_hz)
        try:
            pcm = decoder.decode(payload)
        except (ValueError, OSError) as exc:  # av raises subclasses of these on corrupt input
            st.decode_errors += 1
            log.debug("decode error: %s", exc)
            return
        if self.on_audio is not None:
            self.on_audio(pcm, decoder.rate_hz, arrival_s)
        if self.queue is not None:
            if self.queue.full():
                self.queue.get_nowait()
                st.queue_dropped += 1
            self.queue.put_nowait((pcm, arrival_s))
