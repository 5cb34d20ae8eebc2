"""Uplink: RTP audio payloads -> upstream-format chunks, inline on the event loop.

aiortc's receiver hands every complete audio frame to a decoder *thread* (one per
receiving track) that decodes to 48 kHz stereo ``AudioFrame``s. relay instead
plugs ``UplinkSink`` in where the receiver's jitter buffer was, and, once DTLS is
up, feeds it from the socket callback: ``relay.media.rtp_in`` (the direct receive
path) unprotects, parses and counts each SRTP audio datagram and calls
``sink.push_direct(seq, payload)`` (on the worker's ICE port, from compiled code
inside the ``recvmmsg`` drain once the call's slot is armed); anything it does not
take goes through aiortc, which calls ``sink.add(packet)``. The sink reorders a little, decodes Opus straight to
24 kHz mono (or keeps G.711 bytes as they are), and emits fixed-length chunks
through ``on_chunk``. ``install(receiver, sink)`` does the plugging, in one place.

Packets beyond ``max_packets_per_s`` (a flooding device) are dropped before any decoding.

Reordering: a packet ahead of the expected sequence number is held (at most
``max_hold`` packets); when more arrive the gap is declared lost and concealed
(Opus PLC, or G.711 silence), at most ``max_conceal`` frames. The last lost frame is
recovered from the in-band FEC of the packet after it when that packet carries some
(relay's answer asks devices for it: ``useinbandfec=1``, ``relay.media.codecs``;
libopus conceals when it carries none). Late or duplicate packets are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from relay.media.codecs import PCM16_RATE_HZ, AudioCodec
from relay.media.metrics import MediaMetrics
from relay.media.opus import OpusDecoder, OpusError
from relay.media.ratelimit import TokenBucket
from relay.media.rtp_in import DirectReceivePath

log = logging.getLogger("relay.media")

G711_SILENCE = {"PCMU": 0xFF, "PCMA": 0xD5}


class UplinkSink:
    """Stands in for aiortc's audio ``JitterBuffer``: ``add(packet) -> (pli, None)``."""

    def __init__(self, codec: AudioCodec, *, chunk_ms: int, on_chunk: Callable[[bytes, float], None],
                 metrics: MediaMetrics, max_hold: int = 3, max_conceal: int = 5,
                 max_packets_per_s: float = 100.0) -> None:
        if not 10 <= chunk_ms <= 1000:
            raise ValueError("chunk_ms must be within 10..1000")
        self.codec = codec
        self._decoder = None if codec.is_g711 else OpusDecoder(PCM16_RATE_HZ)
        bytes_per_ms = 8 if codec.is_g711 else PCM16_RATE_HZ * 2 // 1000
        self.chunk_bytes = chunk_ms * bytes_per_ms
        self._on_chunk = on_chunk
        self._metrics = metrics
        self._max_hold = max_hold
        self._max_conceal = max_conceal
        self._expected: int | None = None
        self._held: dict[int, tuple[bytes, float]] = {}
        self._buf = bytearray()
        self._first_arrival: float | None = None
        # a device sends 50 packets/s at 20 ms ptime (100 at 10 ms); a flood is dropped before decoding
        self._bucket = TokenBucket(max_packets_per_s, burst=max_packets_per_s / 2)
        self.closed = False
        self.direct_packets = 0  # packets that came through the direct receive path (relay.media.rtp_in)

    # -- aiortc's JitterBuffer interface ------------------------------------
    def add(self, packet: Any) -> tuple[bool, None]:
        """aiortc's receiver (the slow path) calls this with a depayloaded ``RtpPacket``."""
        self.push(packet.sequence_number, packet._data)  # _data: depayloaded by aiortc just before add()
        return False, None

    def push(self, seq: int, data: bytes) -> None:
        """One RTP payload with its sequence number (the direct path calls this, see relay.media.rtp_in)."""
        if self.closed:
            return
        arrival = time.perf_counter()
        self._metrics.rtp_in_packets += 1
        if not self._bucket.allow(arrival):
            self._metrics.rtp_in_flood += 1
            return
        if self._expected is None:
            self._expected = seq
        delta = (seq - self._expected) & 0xFFFF
        if delta >= 0x8000:  # behind: late or duplicate
            self._metrics.rtp_in_late += 1
            return
        if delta == 0:
            self._consume(data, arrival)
            self._expected = (seq + 1) & 0xFFFF
            self._drain_held()
        elif seq not in self._held:
            self._held[seq] = (data, arrival)
            if len(self._held) > self._max_hold:
                self._skip_gap()

    def push_direct(self, seq: int, data: bytes) -> None:
        """``push``, counted in ``direct_packets``: the direct receive path's entry (relay.media.rtp_in)."""
        self.direct_packets += 1
        self.push(seq, data)

    def remove(self, count: int) -> None:  # JitterBuffer API, unused by the audio path
        return None

    # -- internals ---------------------------------------------------------
    def _drain_held(self) -> None:
        while self._expected in self._held:
            data, arrival = self._held.pop(self._expected)
            self._consume(data, arrival)
            self._expected = (self._expected + 1) & 0xFFFF

    def _skip_gap(self) -> None:
        assert self._expected is not None
        nearest = min(self._held, key=lambda s: (s - self._expected) & 0xFFFF)
        lost = (nearest - self._expected) & 0xFFFF
        self._metrics.rtp_in_lost += lost
        frames = min(lost, self._max_conceal)
        for _ in range(frames - 1):
            self._conceal()
        if frames:
            self._recover(self._held[nearest][0])
        self._expected = nearest
        self._drain_held()

    def _recover(self, next_payload: bytes) -> None:
        """The lost frame just before ``next_payload``: its in-band FEC (Opus), else concealment."""
        if self._decoder is None or not next_payload:
            self._conceal()
            return
        try:
            self._append(self._decoder.decode_fec(next_payload, 20), time.perf_counter())
        except OpusError:
            self._conceal()

    def _conceal(self) -> None:
        if self._decoder is not None:
            try:
                self._append(self._decoder.conceal(20), time.perf_counter())
            except OpusError:
                self._metrics.rtp_in_bad += 1
        else:
            self._append(bytes([G711_SILENCE[self.codec.name]]) * 160, time.perf_counter())

    def _consume(self, data: bytes, arrival: float) -> None:
        if not data:
            return
        if self._decoder is None:
            self._append(data, arrival)
            return
        try:
            pcm16 = self._decoder.decode(data)
        except OpusError as exc:
            self._metrics.rtp_in_bad += 1
            log.debug("bad Opus packet skipped: %s", exc)
            return
        self._append(pcm16, arrival)

    def _append(self, audio: bytes, arrival: float) -> None:
        if self._first_arrival is None:
            self._first_arrival = arrival
        self._buf += audio
        n = self.chunk_bytes
        while len(self._buf) >= n:
            chunk = bytes(self._buf[:n])
            del self._buf[:n]
            # The chunk is complete now; report the arrival of the packet that completed it.
            self._on_chunk(chunk, arrival)
        if not self._buf:
            self._first_arrival = None

    def close(self) -> None:
        self.closed = True
        self._held.clear()
        self._buf.clear()
        if self._decoder is not None:
            self._decoder.close()


def install(receiver: Any, sink: UplinkSink, *, direct: bool = True) -> DirectReceivePath | None:
    """Plug ``sink`` into an aiortc ``RTCRtpReceiver`` before negotiation completes.

    Private attributes of aiortc 1.16 touched here (rows of ``relay.media.compat.TABLE``, checked
    at start-up): the receiver's jitter buffer is replaced by the
    sink, and ``receive()`` is replaced by aiortc 1.16's own minus the decoder thread
    (codecs, RTX map, registration with the transport, the RTCP task): starting that
    thread and joining it again blocked the event loop ~1.2 ms per call under load
    (the join waits for the new thread to get the GIL). With no decoder thread the
    receiver never queues decoded frames, so its remote track stays idle; ``stop()``
    finds no thread to stop.

    With ``direct`` (the default), the direct receive path (``relay.media.rtp_in``) is armed as soon as ``receive()`` has
    run -- aiortc calls it once DTLS is connected -- so SRTP audio reaches the sink from
    the socket callback. The path is returned (``None`` without ``direct``).
    """
    path = DirectReceivePath(receiver, sink) if direct else None
    receiver._RTCRtpReceiver__jitter_buffer = sink

    async def receive(parameters: Any) -> None:
        if not receiver._RTCRtpReceiver__started:  # aiortc 1.16's RTCRtpReceiver.receive, no decoder thread
            for codec in parameters.codecs:
                receiver._RTCRtpReceiver__codecs[codec.payloadType] = codec
            for encoding in parameters.encodings:
                if encoding.rtx:
                    receiver._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
            receiver._RTCRtpReceiver__transport._register_rtp_receiver(receiver, parameters)
            receiver._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(receiver._run_rtcp())
            receiver._RTCRtpReceiver__started = True
        if path is not None and not sink.closed:
            path.arm()

    receiver.receive = receive
    return path
