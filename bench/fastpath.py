"""The bench device's media on relay's own compiled paths, not aiortc's per-packet Python.

A simulated device still negotiates with aiortc (ICE, DTLS, the data channel: what a device
does once per call), but once connected its audio skips aiortc's per-packet machinery both ways:

- **receive** (``DirectReceiver``): the ICE connection's UDP protocols get a ``datagram_received``
  hook that takes SRTP audio of the negotiated payload type, unprotects it with the DTLS
  transport's own SRTP session and parses it with ``relay._fast.parse_rtp`` (the parser relay's
  uplink uses), then accounts it (``AudioReceiver.handle_packet``: sequence gaps, RTP-timestamp
  schedule) and, only when the workload needs the audio (latency markers, chimes), decodes it with
  relay's libopus decoder (``relay.media.opus.OpusDecoder``) at 16 kHz. aioice's STUN parse of
  every datagram, its queue, the DTLS task wake-up, ``RtpPacket``, the router and PyAV are skipped.
  STUN, DTLS (the data channel), SRTCP and anything queued before the hook keep aiortc's path
  (audio never overtakes a datagram still queued for it); audio that goes that way (queued behind
  a data-channel record, as the first packet of a response often is, right after its events) is
  handed to the same accounting and decoder from aiortc's receiver.
- **send** (``SendClock``): one task per event loop sends every device's packets: it wakes every
  ``SLOT_S`` (2 ms) and sends, for each device whose schedule is due, the next packet of its
  looped packet list -- a 12-byte RTP header (``struct.pack_into``), SRTP protect with the DTLS
  transport's session, ``sendto`` on the nominated ICE pair's socket. Devices keep their random
  phase (quantised to the 2 ms slot) and an absolute 20 ms schedule; aiortc's sender gets a track
  that never yields, so it sends no RTP itself (its RTCP keeps running).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pylibsrtp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import State

from relay._fast import parse_rtp
from relay.media.opus import OpusDecoder, OpusError

log = logging.getLogger("bench.fastpath")

FRAME_S = 0.02
FRAME_TICKS = 960  # Opus RTP clock: 48 kHz
SLOT_S = 0.002
MAX_LATE_FRAMES = 5  # as relay.client.sources: further behind, resynchronise instead of bursting
DECODE_RATE_HZ = 16000  # markers (<= 3 kHz) and chimes (<= 1.6 kHz) fit below its 8 kHz Nyquist

OnPacket = Callable[[int, int, bytes, float, int], None]  # seq, payload type, payload, arrival s, RTP ts


class IdleTrack(MediaStreamTrack):
    """An audio track that never yields a frame: aiortc's sender stays quiet (the SendClock sends)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._ended.set()
        super().stop()


def _audio_transceiver(pc: Any) -> Any:
    return next(t for t in pc.getTransceivers() if t.kind == "audio")


class DirectReceiver:
    """Hooks one connected peer's ICE sockets; SRTP audio goes to ``on_packet``."""

    def __init__(self, pc: Any, payload_types: set[int], on_packet: OnPacket) -> None:
        self.on_packet = on_packet
        self.payload_types = frozenset(payload_types)
        receiver = _audio_transceiver(pc).receiver
        self._dtls = receiver.transport
        self._srtp = self._dtls._rx_srtp
        connection = self._dtls.transport._connection
        self._queue = connection._queue
        self.packets = 0  # taken directly
        self.slow_packets = 0  # went aiortc's way (queued behind a DTLS record), handed over all the same
        if self._dtls._state is not State.CONNECTED or self._srtp is None:
            raise RuntimeError("DirectReceiver needs a connected DTLS transport")
        # audio that still takes aiortc's path (queued behind a data-channel record: typically the first
        # packet of a response, right after its events) must reach on_packet too, decoded like the rest
        receiver._handle_rtp_packet = self._slow
        for protocol in connection._protocols:
            protocol.datagram_received = self._hook(protocol.datagram_received)

    async def _slow(self, packet: Any, arrival_time_ms: int = 0) -> None:
        self.slow_packets += 1
        self.on_packet(packet.sequence_number, packet.payload_type, packet.payload, time.monotonic(),
                       packet.timestamp)

    def _hook(self, original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        def datagram_received(data: bytes, addr: Any) -> None:
            if not (len(data) >= 12 and 127 < data[0] < 192 and self.take(data)):
                original(data, addr)

        return datagram_received

    def take(self, data: bytes) -> bool:
        b1 = data[1]
        if 191 < b1 < 209 or (b1 & 0x7F) not in self.payload_types or not self._queue.empty():
            return False  # SRTCP, another payload type, or aiortc still has datagrams queued
        if self._dtls._state is not State.CONNECTED:
            return False
        try:
            payload_type, _marker, seq, timestamp, _ssrc, payload = parse_rtp(self._srtp.unprotect(data))
        except (pylibsrtp.Error, ValueError):
            return True  # what aiortc would drop
        self.packets += 1
        self.on_packet(seq, payload_type, payload, time.monotonic(), timestamp)
        return True


class Pcm16Decoder:
    """relay's libopus decoder at 16 kHz, returning int16 arrays (what the detectors take)."""

    rate_hz = DECODE_RATE_HZ

    def __init__(self) -> None:
        self._dec = OpusDecoder(DECODE_RATE_HZ)
        self.errors = 0

    def decode(self, payload: bytes) -> np.ndarray | None:
        try:
            return np.frombuffer(self._dec.decode(payload), np.int16)
        except OpusError:
            self.errors += 1
            return None

    def close(self) -> None:
        self._dec.close()


class DirectSender:
    """One device's uplink: its looped packet list on an absolute 20 ms schedule."""

    def __init__(
        self,
        pc: Any,
        payload_type: int,
        packets: list[bytes],
        *,
        start_index: int = 0,
        on_sent: Callable[[int, float], None] | None = None,
    ) -> None:
        sender = _audio_transceiver(pc).sender
        self._dtls = sender.transport
        self._srtp = self._dtls._tx_srtp
        self._connection = self._dtls.transport._connection
        self.packets = packets
        self.pos = start_index % len(packets) if packets else 0
        self.on_sent = on_sent
        self.frames_sent = 0
        self.resyncs = 0
        self.start_s = 0.0
        self._header = bytearray(12)
        struct.pack_into("!BBHII", self._header, 0, 0x80, 0x80 | (payload_type & 0x7F), 0, 0, sender._ssrc)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)

    def due_s(self) -> float:
        return self.start_s + self.frames_sent * FRAME_S

    def send_next(self, now: float) -> None:
        if now - self.due_s() > MAX_LATE_FRAMES * FRAME_S:
            self.resyncs += 1  # the loop stalled: a real microphone would have lost these frames
            self.start_s = now - self.frames_sent * FRAME_S
        pair = self._connection._nominated.get(1)
        if pair is None or self._dtls._state is not State.CONNECTED:
            self.frames_sent += 1
            return
        index = self.pos
        payload = self.packets[index]
        self.pos = index + 1 if index + 1 < len(self.packets) else 0
        header = self._header
        struct.pack_into("!HI", header, 2, self._seq, self._ts)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME_TICKS) & 0xFFFFFFFF
        pair.protocol.transport.sendto(self._srtp.protect(bytes(header) + payload), pair.remote_addr)
        self.frames_sent += 1
        if self.on_sent is not None:
            self.on_sent(index, now)


class SendClock:
    """Every device's uplink from one task: a wake-up every ``SLOT_S``, not one per packet per device."""

    _by_loop: dict[int, SendClock] = {}

    def __init__(self) -> None:
        self.senders: set[DirectSender] = set()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_loop(cls) -> SendClock:
        key = id(asyncio.get_running_loop())
        clock = cls._by_loop.get(key)
        if clock is None:
            clock = cls._by_loop[key] = cls()
        return clock

    def add(self, sender: DirectSender, phase_s: float) -> None:
        """Start ``sender`` ``phase_s`` from now (rounded up to the next slot by the clock's wake-ups)."""
        sender.start_s = time.monotonic() + phase_s
        self.senders.add(sender)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def remove(self, sender: DirectSender) -> None:
        self.senders.discard(sender)

    async def _run(self) -> None:
        start = time.monotonic()
        k = 0
        while self.senders:
            k += 1
            delay = start + k * SLOT_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                k += int(-delay / SLOT_S)  # behind: skip the missed wake-ups, not the packets
            now = time.monotonic()
            for sender in list(self.senders):
                try:
                    while sender.due_s() <= now and sender in self.senders:
                        sender.send_next(now)
                except (OSError, pylibsrtp.Error) as exc:
                    log.debug("device send failed: %s", exc)
                    self.senders.discard(sender)
        self._by_loop.pop(id(asyncio.get_running_loop()), None)
