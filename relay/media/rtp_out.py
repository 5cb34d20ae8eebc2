"""The direct downlink send path: one RTP packet built, SRTP-protected and sent inside the clock's tick.

aiortc's send path costs, per downlink frame: an ``av.Packet`` (+ ``Fraction``) on the
track's queue, a future waking the sender's ``_run_rtp`` task (one task step per call
per tick), an ``RtpPacket`` with a ``HeaderExtensions`` object, its serialization
through the extension map, ``RTCDtlsTransport._send_rtp`` (SRTP protect) and aioice's
``Connection.send`` coroutine before the ``sendto``.

``install(sender, track)`` replaces, on one audio ``RTCRtpSender`` (an instance
attribute: nothing global changes), the ``_run_rtp`` coroutine aiortc starts from
``send()`` once DTLS is up. The replacement does not loop: it binds a
``DirectRtpSender`` to the track and waits until the track ends or the sender is
stopped. From then on ``PacketTrack.push(payload)`` calls ``DirectRtpSender.send``
synchronously, which

1. builds the RTP packet exactly as aiortc's sender would for a pre-encoded packet
   (``RtpWriter``: payload type, sequence number from a random start, timestamp =
   random origin + the track's pts, the sender's SSRC, marker bit set as aiortc sets it,
   and the header extensions of the negotiated map -- ``mid``, ``abs-send-time`` when
   negotiated -- laid out by aiortc's own ``HeaderExtensionsMap.set``),
2. protects it with the DTLS transport's outbound SRTP session (``_tx_srtp``),
3. sends it on the ICE connection's nominated pair (``sendto`` on its UDP transport),
4. updates the counters aiortc's RTCP sender reports and ``getStats`` read: the
   sender's packet/octet counts, last RTP timestamp and its NTP time, and the DTLS
   transport's tx packets/bytes.

aiortc's RTCP task for the sender (SR + SDES every ~1 s, BYE at the end) keeps
running unchanged, so the device's receiver sees correct sender reports (and its
RR yields relay's RTT estimate). Retransmission is not negotiated for audio.

Every private aiortc/aioice name the path touches is a row of ``relay.media.compat.TABLE``,
checked once at start-up (written against aiortc 1.16, aioice 0.13).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import HeaderExtensions
from aiortc.utils import random32

log = logging.getLogger("relay.media")

NTP_EPOCH_OFFSET_S = 2208988800  # 1900-01-01 -> 1970-01-01
ABS_SEND_TIME_PROBE = 0xA5C3E1  # a value whose bytes are found in a serialized extension block


def ntp_time(now_s: float) -> int:
    """64-bit NTP time of a ``time.time()`` value (what ``aiortc.clock.current_ntp_time`` returns)."""
    seconds = int(now_s)
    return ((seconds + NTP_EPOCH_OFFSET_S) << 32) | int((now_s - seconds) * 4294967296.0)


class _NoRtpHistory(dict):  # type: ignore[type-arg]
    """Stands in for an aiortc sender's RTP history: relay's audio is never retransmitted (aiortc
    negotiates no NACK for audio), so the 128 packets it would keep per call are not kept."""

    def __setitem__(self, key: object, value: object) -> None:
        return None


class RtpWriter:
    """Serializes one stream's RTP packets byte-for-byte as aiortc 1.16's ``RtpPacket.serialize`` does
    for its sender (no CSRCs, no padding); the header is built once and patched per packet."""

    __slots__ = ("_abs_at", "_header", "sequence_number")

    def __init__(self, *, payload_type: int, ssrc: int, sequence_number: int, marker: int = 1,
                 extension_profile: int = 0, extension_value: bytes = b"", abs_send_time_at: int = -1) -> None:
        if not 0 <= payload_type < 128:
            raise ValueError("payload type must be 0..127")
        has_ext = bool(extension_value)
        header = bytearray(struct.pack("!BBHLL", 0x80 | (0x10 if has_ext else 0), (marker << 7) | payload_type,
                                       0, 0, ssrc))
        if has_ext:
            header += struct.pack("!HH", extension_profile, len(extension_value) >> 2) + extension_value
        self._header = header
        # offset of the 3 abs-send-time bytes in the header, or -1 (not negotiated)
        self._abs_at = 16 + abs_send_time_at if abs_send_time_at >= 0 else -1
        self.sequence_number = sequence_number & 0xFFFF

    def write(self, payload: bytes, timestamp: int, abs_send_time: int = 0) -> bytes:
        """One packet; advances the sequence number."""
        header = self._header
        struct.pack_into("!HL", header, 2, self.sequence_number, timestamp & 0xFFFFFFFF)
        at = self._abs_at
        if at >= 0:
            header[at] = (abs_send_time >> 16) & 0xFF
            header[at + 1] = (abs_send_time >> 8) & 0xFF
            header[at + 2] = abs_send_time & 0xFF
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        return bytes(header) + payload


def writer_for(sender: Any, payload_type: int) -> RtpWriter:
    """An ``RtpWriter`` for a started sender: its SSRC, a random first sequence number, and the
    header extensions aiortc's sender adds to a pre-encoded packet."""
    return make_writer(sender._RTCRtpSender__rtp_header_extensions_map, sender._RTCRtpSender__mid,
                       payload_type=payload_type, ssrc=sender._ssrc, sequence_number=random_sequence_number())


def make_writer(ext_map: Any, mid: str | None, *, payload_type: int, ssrc: int, sequence_number: int) -> RtpWriter:
    """An ``RtpWriter`` whose extension block is what aiortc's ``HeaderExtensionsMap.set`` (the negotiated
    ids) lays out for ``mid`` and ``abs-send-time`` -- the extensions aiortc's sender sets on a packet
    it did not encode itself (no audio level) -- with the 3 abs-send-time bytes patched per packet."""
    profile, value = ext_map.set(HeaderExtensions(mid=mid, abs_send_time=ABS_SEND_TIME_PROBE))
    abs_at = -1
    if value:
        _, without = ext_map.set(HeaderExtensions(mid=mid))
        if without != value:  # abs-send-time is negotiated: find its 3 bytes
            abs_at = value.find(ABS_SEND_TIME_PROBE.to_bytes(3, "big"))
            if abs_at < 0:
                raise RuntimeError("unsupported aiortc version: abs-send-time extension layout not found")
    return RtpWriter(payload_type=payload_type, ssrc=ssrc, sequence_number=sequence_number,
                     extension_profile=profile, extension_value=value, abs_send_time_at=abs_at)


class DirectRtpSender:
    """Sends one call's downlink packets synchronously (see the module docstring)."""

    def __init__(self, sender: Any, payload_type: int) -> None:
        self._sender = sender
        self._dtls = sender.transport
        self._connection = self._dtls.transport._connection
        self._writer = writer_for(sender, payload_type)
        self._timestamp_origin = random32()
        self.packets_sent = 0

    def send(self, payload: bytes, pts: int) -> bool:
        """Build, protect and send one packet of RTP timestamp ``origin + pts``; ``False`` if it
        could not leave (DTLS not connected, no nominated ICE pair, socket gone)."""
        dtls = self._dtls
        if dtls._state is not State.CONNECTED:
            return False
        pair = self._connection._nominated.get(1)
        if pair is None:
            return False
        now = time.time()
        ntp = ntp_time(now)
        timestamp = (self._timestamp_origin + pts) & 0xFFFFFFFF
        packet = self._writer.write(payload, timestamp, (ntp >> 14) & 0x00FFFFFF)
        data = dtls._tx_srtp.protect(packet)
        udp = pair.protocol.transport
        if udp is None or udp.is_closing():
            return False
        udp.sendto(data, pair.remote_addr)
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = ntp
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__octet_count += len(payload)
        sender._RTCRtpSender__packet_count += 1
        dtls._RTCDtlsTransport__tx_bytes += len(data)
        dtls._RTCDtlsTransport__tx_packets += 1
        self.packets_sent += 1
        return True


def install(sender: Any, track: Any) -> None:
    """Make ``sender`` send ``track``'s packets through ``DirectRtpSender`` (before ``send()`` runs),
    and keep no RTP history for retransmissions.

    ``track`` needs ``bind(direct)`` (called once DTLS is up) and ``wait_ended()`` (awaits the
    end of the track); ``relay.media.downlink.PacketTrack`` has both.
    """
    sender._RTCRtpSender__rtp_history = _NoRtpHistory()  # ~80 KB per call saved

    async def run_rtp(codec: Any) -> None:
        # stands in for RTCRtpSender._run_rtp: started by send() once DTLS is connected,
        # cancelled by stop(); it must set __rtp_started / __rtp_exited as the original does
        sender._RTCRtpSender__rtp_started.set()
        try:
            track.bind(DirectRtpSender(sender, codec.payloadType))
            await track.wait_ended()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("direct RTP sender failed to start")
        finally:
            track.bind(None)
            track.stop()
            sender._RTCRtpSender__rtp_exited.set()

    sender._run_rtp = run_rtp
