"""Uplink: RTP audio payloads -> upstream-format chunks, inline on the event loop.

aiortc's receiver hands every complete audio frame to a decoder *thread* (one per
receiving track) that decodes to 48 kHz stereo ``AudioFrame``s. relay instead
plugs ``UplinkSink`` in where the receiver's jitter buffer was, and, once DTLS is
up, feeds it from the socket callback: ``relay.media.rtp_in`` (the direct receive
path) unprotects, parses and counts each SRTP audio datagram and calls
``sink.push_direct(seq, payload)``; on the worker's ICE port, once the call's slot is armed,
the compiled ``recvmmsg`` drain hands each payload to the sink's compiled assembler
(``relay._fast.UplinkAssembler``) from C, with no Python call per packet. Anything the direct
path does not take goes through aiortc, which calls ``sink.add(packet)``. The assembler reorders
a little, decodes Opus straight to 24 kHz mono (or keeps G.711 bytes as they are), and emits
fixed-length chunks through ``on_chunk`` (Python runs once per chunk).
``install(receiver, sink)`` does the plugging, in one place.

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
from collections.abc import Callable
from typing import Any

from relay._fast import UplinkAssembler
from relay.call.metrics import MediaMetrics
from relay.media.codecs import PCM16_RATE_HZ, AudioCodec
from relay.media.opus import DECODE_FN, OpusDecoder
from relay.media.rtp_in import DirectReceivePath

G711_SILENCE = {"PCMU": 0xFF, "PCMA": 0xD5}


class UplinkSink:
    """Stands in for aiortc's audio ``JitterBuffer``: ``add(packet) -> (pli, None)``.

    The per-packet work is ``relay._fast.UplinkAssembler``'s (compiled; its twin has the rules);
    this class owns the decoder, forwards chunks and keeps the worker's counters. The assembler
    counts in C; ``sync()`` adds its counts to ``metrics`` (``rtp_in_*``) and ``direct_packets``: after
    every packet pushed from Python, before every chunk, at close, and every 250 ms from the worker's
    ICE port (``DirectReceivePath.sync``), so between two syncs the counters lag by at most a chunk's
    packets.
    """

    def __init__(self, codec: AudioCodec, *, chunk_ms: int, on_chunk: Callable[[bytes, float], None],
                 metrics: MediaMetrics, max_hold: int = 3, max_conceal: int = 5,
                 max_packets_per_s: float = 100.0) -> None:
        if not 10 <= chunk_ms <= 1000:
            raise ValueError("chunk_ms must be within 10..1000")
        self.codec = codec
        decoder = None if codec.is_g711 else OpusDecoder(PCM16_RATE_HZ)
        #: the call's Opus decoder (``None`` for G.711: its bytes pass through untranscoded); the assembler owns it
        self.decoder = decoder
        bytes_per_ms = 8 if codec.is_g711 else PCM16_RATE_HZ * 2 // 1000
        self.chunk_bytes = chunk_ms * bytes_per_ms
        self._on_chunk = on_chunk
        self._metrics = metrics
        self.direct_packets = 0  # packets that came through the direct receive path (relay.media.rtp_in)
        # a device sends 50 packets/s at 20 ms ptime (100 at 10 ms); a flood is dropped before decoding
        self.assembler = UplinkAssembler(decoder, DECODE_FN, G711_SILENCE.get(codec.name, 0),
                                         chunk_bytes=self.chunk_bytes, on_chunk=self._chunk, max_hold=max_hold,
                                         max_conceal=max_conceal, max_packets_per_s=max_packets_per_s)

    @property
    def closed(self) -> bool:
        return bool(self.assembler.closed)

    # -- aiortc's JitterBuffer interface ------------------------------------
    def add(self, packet: Any) -> tuple[bool, None]:
        """aiortc's receiver (the slow path) calls this with a depayloaded ``RtpPacket``."""
        self.push(packet.sequence_number, packet._data)  # _data: depayloaded by aiortc just before add()
        return False, None

    def push(self, seq: int, data: bytes) -> None:
        """One RTP payload with its sequence number."""
        try:
            self.assembler.push(seq, data)
        finally:
            self.sync()

    def push_direct(self, seq: int, data: bytes) -> None:
        """``push``, counted in ``direct_packets``: the direct receive path's entry (relay.media.rtp_in)."""
        try:
            self.assembler.push_direct(seq, data)
        finally:
            self.sync()

    def remove(self, count: int) -> None:  # JitterBuffer API, unused by the audio path
        return None

    def sync(self) -> None:
        """Add what the assembler counted since the last sync to the worker's metrics."""
        packets, flood, late, lost, bad, direct = self.assembler.take_counts()
        m = self._metrics  # a chunk's sync may fall inside a push: lost/bad can come without packets
        m.rtp_in_packets += packets
        m.rtp_in_flood += flood
        m.rtp_in_late += late
        m.rtp_in_lost += lost
        m.rtp_in_bad += bad
        self.direct_packets += direct

    def _chunk(self, chunk: bytes, arrival: float) -> None:
        self.sync()
        self._on_chunk(chunk, arrival)

    def close(self) -> None:
        self.assembler.close()  # closes the decoder
        self.sync()


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
