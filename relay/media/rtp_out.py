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

1. writes the RTP packet into the socket's send queue exactly as aiortc's sender would build it
   for a pre-encoded packet (``relay._fast.RtpStream``: payload type, sequence number from a
   random start, timestamp = random origin + the track's pts, the sender's SSRC, marker bit set
   as aiortc sets it, and the header extensions of the negotiated map -- ``mid``,
   ``abs-send-time`` when negotiated -- laid out once by aiortc's own ``HeaderExtensionsMap.set``),
2. protects it there, in place, with the DTLS transport's outbound SRTP session (``_tx_srtp``:
   libsrtp's ``srtp_protect`` of the library pylibsrtp loaded, called from compiled code),
3. queues it for the nominated ICE pair's socket: the worker's ICE port's queue
   (``relay.media.mux``), or a queue of this call's own with a port per call; each queue leaves
   with one ``sendmmsg`` at the end of the loop iteration,
4. counts it in the stream's C fields, which aiortc's RTCP sender reports and ``getStats`` read
   through the properties of ``DirectCountedSender`` (the sender's packet/octet counts, last RTP
   timestamp and its NTP time; the DTLS transport's tx packets/bytes are brought up to date when
   they are read).

aiortc's RTCP task for the sender (SR + SDES every ~1 s, BYE at the end) keeps
running unchanged, so the device's receiver sees correct sender reports (and its
RR yields relay's RTT estimate). Retransmission is not negotiated for audio.

Every private aiortc/aioice name the path touches is a row of ``relay.media.compat.TABLE``,
checked once at start-up (written against aiortc 1.16, aioice 0.13).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpsender import RTCRtpSender, random_sequence_number
from aiortc.rtp import HeaderExtensions
from aiortc.utils import random32
from pylibsrtp._binding import ffi as _ffi
from pylibsrtp._binding import lib as _srtp_lib

from relay._fast import RtpStream, SendQueue

log = logging.getLogger("relay.media")

NTP_EPOCH_OFFSET_S = 2208988800  # 1900-01-01 -> 1970-01-01
ABS_SEND_TIME_PROBE = 0xA5C3E1  # a value whose bytes are found in a serialized extension block
PER_CALL_QUEUE = 8  # datagrams a per-call socket's queue holds (one a tick; more only after a loop stall)
# the srtp_protect of the libsrtp pylibsrtp loaded (its cffi module): called by relay._fast.RtpStream
_SRTP_PROTECT = int(_ffi.cast("uintptr_t", _ffi.addressof(_srtp_lib, "srtp_protect")))


def ntp_time(now_s: float) -> int:
    """64-bit NTP time of a ``time.time()`` value (what ``aiortc.clock.current_ntp_time`` returns)."""
    seconds = int(now_s)
    return ((seconds + NTP_EPOCH_OFFSET_S) << 32) | int((now_s - seconds) * 4294967296.0)


class _NoRtpHistory(dict):  # type: ignore[type-arg]
    """Stands in for an aiortc sender's RTP history: relay's audio is never retransmitted (aiortc
    negotiates no NACK for audio), so the 128 packets it would keep per call are not kept."""

    def __setitem__(self, key: object, value: object) -> None:
        return None


def srtp_pointers(session: Any) -> tuple[int, int]:
    """libsrtp's ``srtp_protect`` and ``session``'s ``srtp_t``, both as addresses, from the libsrtp
    pylibsrtp loaded (``session``: a ``pylibsrtp.Session``; its ``_srtp`` is the ``srtp_t *`` it
    created) -- for ``relay._fast.RtpStream.set_srtp``."""
    try:
        ctx = session._srtp[0]
    except (AttributeError, TypeError, IndexError) as exc:
        raise RuntimeError("unsupported pylibsrtp version: Session._srtp not found") from exc
    return _SRTP_PROTECT, int(_ffi.cast("uintptr_t", ctx))


def make_stream(ext_map: Any, mid: str | None, *, payload_type: int, ssrc: int, sequence_number: int,
                timestamp_origin: int = 0) -> RtpStream:
    """An ``RtpStream`` (``relay._fast``) whose extension block is what aiortc's ``HeaderExtensionsMap.set``
    (the negotiated ids) lays out for ``mid`` and ``abs-send-time`` -- the extensions aiortc's sender sets
    on a packet it did not encode itself (no audio level) -- with the 3 abs-send-time bytes written per
    packet."""
    profile, value = ext_map.set(HeaderExtensions(mid=mid, abs_send_time=ABS_SEND_TIME_PROBE))
    abs_at = -1
    if value:
        _, without = ext_map.set(HeaderExtensions(mid=mid))
        if without != value:  # abs-send-time is negotiated: find its 3 bytes
            abs_at = value.find(ABS_SEND_TIME_PROBE.to_bytes(3, "big"))
            if abs_at < 0:
                raise RuntimeError("unsupported aiortc version: abs-send-time extension layout not found")
    return RtpStream(payload_type=payload_type, ssrc=ssrc, sequence_number=sequence_number,
                     timestamp_origin=timestamp_origin, extension_profile=profile, extension_value=value,
                     abs_send_time_at=abs_at)


def stream_for(sender: Any, payload_type: int) -> RtpStream:
    """An ``RtpStream`` for a started sender: its SSRC, a random first sequence number and timestamp
    origin, the header extensions aiortc's sender adds to a pre-encoded packet."""
    return make_stream(sender._RTCRtpSender__rtp_header_extensions_map, sender._RTCRtpSender__mid,
                       payload_type=payload_type, ssrc=sender._ssrc, sequence_number=random_sequence_number(),
                       timestamp_origin=random32())


class DirectRtpSender:
    """Sends one call's downlink packets synchronously (see the module docstring)."""

    def __init__(self, sender: Any, payload_type: int) -> None:
        self._sender = sender
        self._dtls = sender.transport
        self._connection = self._dtls.transport._connection
        self.stream = stream_for(sender, payload_type)
        session = self._dtls._tx_srtp
        self.stream.set_srtp(session, *srtp_pointers(session))
        self._loop = asyncio.get_running_loop()
        self._udp: Any = None  # the nominated pair's transport the queue below belongs to
        self._queue: Any = None
        self._destination: Any = None  # the ICE port's address mapping (mux), or None
        self._pair: Any = None  # the nominated pair last sent on, and its remote address
        self._addr: Any = None
        self._tx_synced = (0, 0)  # (packets, bytes) already added to the DTLS transport's counters

    @property
    def packets_sent(self) -> int:
        return self.stream.packets_sent

    def send(self, payload: bytes, pts: int) -> bool:
        """Build, protect and queue one packet of RTP timestamp ``origin + pts``; ``False`` if it
        could not leave (DTLS not connected, no nominated ICE pair, socket gone)."""
        if self._dtls._state is not State.CONNECTED:
            return False
        pair = self._connection._nominated.get(1)
        if pair is None:
            return False
        udp = pair.protocol.transport
        if udp is None or udp.is_closing():
            return False
        if udp is not self._udp:
            self._attach(udp)
        if pair is not self._pair:  # CandidatePair.remote_addr makes a new tuple each time: once per pair
            self._pair, self._addr = pair, pair.remote_addr
        addr = self._addr
        destination = self._destination
        self.stream.send(self._queue, payload, pts, addr if destination is None else destination(addr))
        return True

    def _attach(self, udp: Any) -> None:
        """The queue of the socket ``udp`` sends on: the worker's ICE port's (one ``sendmmsg`` for every
        call's packets of a tick), or, with a port per call, one of this call's own."""
        media_queue = getattr(udp, "media_queue", None)
        if media_queue is not None:  # relay.media.mux._CallTransport
            self._queue, self._destination = media_queue(), udp.media_destination
        else:
            self._queue = SendQueue(_CallSocket(udp), PER_CALL_QUEUE, self._schedule_flush)
            self._destination = None
        self._udp = udp

    def _schedule_flush(self) -> None:
        self._loop.call_soon(self._flush, self._queue)

    def _flush(self, queue: Any) -> None:
        udp = self._udp
        if queue is self._queue and udp is not None and not udp.is_closing():
            queue.flush()

    def sync_counters(self) -> None:
        """Add what left since the last call to the DTLS transport's tx counters (its ``getStats``)."""
        stream, dtls = self.stream, self._dtls
        packets, octets = stream.packets_sent, stream.bytes_sent
        done_packets, done_bytes = self._tx_synced
        dtls._RTCDtlsTransport__tx_packets += packets - done_packets
        dtls._RTCDtlsTransport__tx_bytes += octets - done_bytes
        self._tx_synced = (packets, octets)


class _CallSocket:
    """A call's own UDP socket as ``SendQueue`` takes it: ``fileno()`` (the compiled queue's ``sendmmsg``)
    and ``sendto()`` (the twin's loop: through the transport, as asyncio's socket wrapper has none)."""

    __slots__ = ("_fd", "_udp")

    def __init__(self, udp: Any) -> None:
        self._udp = udp
        self._fd = udp.get_extra_info("socket").fileno()

    def fileno(self) -> int:
        return self._fd

    def sendto(self, data: bytes, addr: Any) -> None:
        self._udp.sendto(data, addr)


def _stream_counter(name: str, field: str, *, running: bool) -> property:
    """A property for aiortc's private sender counter ``name``: read from the ``RtpStream`` of the
    bound ``DirectRtpSender`` (``running``: counts, added to what aiortc counted before), else the
    value aiortc keeps (instance dict)."""
    key = f"_RTCRtpSender__{name}"

    def get(self: Any) -> Any:
        values = self.__dict__
        direct = values.get("_relay_direct")
        base = values.get(key, 0)
        if direct is None:
            return base
        direct.sync_counters()  # the transport's stats are read right after the sender's
        stream = direct.stream
        if running:
            return base + getattr(stream, field)
        return getattr(stream, field) if stream.packets_sent else base

    def put(self: Any, value: Any) -> None:
        self.__dict__[key] = value

    return property(get, put)


class DirectCountedSender(RTCRtpSender):
    """An ``RTCRtpSender`` whose RTCP sender reports and ``getStats`` read the counters of the direct
    path's ``RtpStream`` (C fields): ``install`` sets it as the class of one sender instance."""

    _RTCRtpSender__packet_count = _stream_counter("packet_count", "packets_sent", running=True)
    _RTCRtpSender__octet_count = _stream_counter("octet_count", "octets_sent", running=True)
    _RTCRtpSender__rtp_timestamp = _stream_counter("rtp_timestamp", "last_timestamp", running=False)
    _RTCRtpSender__ntp_timestamp = _stream_counter("ntp_timestamp", "last_ntp", running=False)


def install(sender: Any, track: Any) -> None:
    """Make ``sender`` send ``track``'s packets through ``DirectRtpSender`` (before ``send()`` runs),
    and keep no RTP history for retransmissions.

    ``track`` needs ``bind(direct)`` (called once DTLS is up) and ``wait_ended()`` (awaits the
    end of the track); ``relay.media.downlink.PacketTrack`` has both.
    """
    sender._RTCRtpSender__rtp_history = _NoRtpHistory()  # ~80 KB per call saved
    sender.__class__ = DirectCountedSender  # RTCP and getStats read the RtpStream's counters

    def bind(direct: DirectRtpSender | None) -> None:
        sender.__dict__["_relay_direct"] = direct
        track.bind(direct)

    async def run_rtp(codec: Any) -> None:
        # stands in for RTCRtpSender._run_rtp: started by send() once DTLS is connected,
        # cancelled by stop(); it must set __rtp_started / __rtp_exited as the original does
        sender._RTCRtpSender__rtp_started.set()
        try:
            bind(DirectRtpSender(sender, codec.payloadType))
            await track.wait_ended()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("direct RTP sender failed to start")
        finally:
            direct = sender.__dict__.get("_relay_direct")
            if direct is not None:  # freeze the counters where they are (RTCP's BYE, late getStats)
                direct.sync_counters()
                for name in ("packet_count", "octet_count", "rtp_timestamp", "ntp_timestamp"):
                    sender.__dict__[f"_RTCRtpSender__{name}"] = getattr(sender, f"_RTCRtpSender__{name}")
            bind(None)
            track.stop()
            sender._RTCRtpSender__rtp_exited.set()

    sender._run_rtp = run_rtp
