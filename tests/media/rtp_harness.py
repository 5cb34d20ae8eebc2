"""A relay-side receiver and a silent aiortc device on 127.0.0.1, connected for real, into which
crafted SRTP datagrams are injected at relay's UDP protocol (``datagram_received``), exactly where
the socket delivers them. Used by the direct-path tests and its microbenchmark.

The device sends no audio of its own (its track never yields a frame): every RTP packet the relay
side sees is one the test wrote, protected with the device's own SRTP session.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from relay.call.metrics import MediaMetrics
from relay.media import ice, uplink
from relay.media.codecs import AudioCodec, codec_preferences
from relay.media.opus import OpusEncoder


class SilentTrack(MediaStreamTrack):
    kind = "audio"

    async def recv(self):  # never yields a frame: the sender sends RTCP only
        await asyncio.Event().wait()


@dataclass
class Side:
    codec: AudioCodec
    direct: bool
    device: RTCPeerConnection
    relay: RTCPeerConnection
    sink: uplink.UplinkSink
    metrics: MediaMetrics
    chunks: list[bytes] = field(default_factory=list)
    delivered: int = 0

    @property
    def receiver(self) -> Any:
        return self.relay.getTransceivers()[0].receiver

    @property
    def dtls(self) -> Any:
        return self.receiver.transport

    @property
    def connection(self) -> Any:
        return self.dtls.transport._connection

    @property
    def device_sender(self) -> Any:
        return self.device.getTransceivers()[0].sender

    def protect(self, rtp: bytes) -> bytes:
        return self.device_sender.transport._tx_srtp.protect(rtp)

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return self.device_sender.transport._tx_srtp.protect_rtcp(rtcp)

    def count_delivered(self) -> None:
        """From now on count, in ``delivered``, the datagrams the DTLS transport counts (all but STUN),
        the injected ones and the device's real ones (its RTCP) alike."""
        self.delivered = 0
        for protocol in self.connection._protocols:
            def counting(data: bytes, addr: Any, _next=protocol.datagram_received) -> None:
                if data and data[0] > 3:  # STUN's first byte is 0 or 1
                    self.delivered += 1
                _next(data, addr)

            protocol.datagram_received = counting

    def inject(self, datagram: bytes) -> None:
        pair = self.connection._nominated[1]
        pair.protocol.datagram_received(datagram, pair.remote_addr)

    async def settle(self) -> None:
        """Until the DTLS task has drained every queued datagram (the device's real RTCP included).

        Returns with the queue empty and no loop iteration in between, so a datagram injected right
        after finds nothing queued ahead of it (processing a dequeued datagram has no real await).
        """
        for _ in range(1000):
            await asyncio.sleep(0)
            if self.connection._queue.empty():
                return
        raise AssertionError("the DTLS task did not drain its queue")

    def stats(self) -> dict[int, tuple]:
        streams = self.receiver._RTCRtpReceiver__remote_streams
        return {ssrc: (s.base_seq, s.max_seq, s.cycles, s.packets_received, s.packets_lost)
                for ssrc, s in streams.items()}

    async def close(self) -> None:
        await self.device.close()
        await self.relay.close()
        self.sink.close()


async def connect(codec: AudioCodec, *, direct: bool) -> Side:
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    dt = device.addTransceiver(SilentTrack(), direction="sendrecv")
    dt.setCodecPreferences(codec_preferences(codec))
    await device.setLocalDescription(await device.createOffer())

    metrics = MediaMetrics()
    relay = RTCPeerConnection(ice.rtc_configuration())
    rt = relay.addTransceiver(SilentTrack(), direction="sendrecv")
    rt.setCodecPreferences(codec_preferences(codec))
    side = Side(codec, direct, device, relay, None, metrics)  # type: ignore[arg-type]
    # injected far faster than real time: no flood limit here (it is tested in test_uplink.py)
    side.sink = uplink.UplinkSink(codec, chunk_ms=40, on_chunk=lambda c, _t: side.chunks.append(c), metrics=metrics,
                                  max_packets_per_s=1e9)
    uplink.install(rt.receiver, side.sink, direct=direct)
    await relay.setRemoteDescription(device.localDescription)
    await relay.setLocalDescription(await relay.createAnswer())
    await device.setRemoteDescription(RTCSessionDescription(relay.localDescription.sdp, "answer"))
    async with asyncio.timeout(10):
        while side.receiver not in side.dtls._rtp_router.receivers:  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.01)
        while device.getTransceivers()[0].sender.transport.state != "connected":  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return side


def payload_type(side: Side) -> int:
    codecs = side.receiver._RTCRtpReceiver__codecs
    return next(pt for pt, c in codecs.items() if c.name.lower() == side.codec.name.lower())


def rtp(*, pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: int = 0, csrcs: int = 0,
        ext: bytes | None = None, padding: int = 0) -> bytes:
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if ext is not None else 0) | csrcs
    out = struct.pack("!BBHLL", b0, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    out += b"".join(struct.pack("!L", 0x5000 + i) for i in range(csrcs))
    if ext is not None:
        assert len(ext) % 4 == 0
        out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def speech_payloads(codec: AudioCodec, n: int, seed: int = 7) -> list[bytes]:
    """``n`` 20 ms payloads of a tone with noise: Opus packets (24 kHz mono encoder) or G.711 bytes."""
    rng = np.random.default_rng(seed)
    if codec.is_g711:
        return [bytes(rng.integers(0, 256, 160, dtype=np.uint8)) for _ in range(n)]
    enc = OpusEncoder(24000)
    t = np.arange(480 * n) / 24000
    pcm = (6000 * np.sin(2 * np.pi * 330 * t) + rng.normal(0, 500, len(t))).astype("<i2").tobytes()
    return [enc.encode(pcm[i * 960:(i + 1) * 960]) for i in range(n)]
