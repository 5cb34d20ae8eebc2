"""The direct uplink receive path: SRTP audio datagram -> ``UplinkSink`` inside the socket callback.

aiortc's receive path costs a lot of Python per uplink packet: aioice's
``StunProtocol.datagram_received`` tries to parse every datagram as STUN (a raised
``ValueError`` per RTP packet), queues it on the ICE connection's ``asyncio.Queue``,
the DTLS transport's task wakes up for it (``__run`` -> ``_recv_next`` -> ``recv``),
unprotects it, builds an ``RtpPacket``, routes it, and the receiver updates statistics
and depayloads before the sink (relay's jitter-buffer stand-in) sees it.

``DirectReceivePath`` short-cuts that once the call is up. It replaces
``datagram_received`` on the ICE connection's UDP protocols (instance attributes, so
nothing global changes) with a hook that, for an **SRTP** datagram (first byte
128..191, not RTCP) of the **negotiated audio payload type**, synchronously:

1. counts it in the DTLS transport's rx counters (``getStats`` transport stats),
2. unprotects it with the DTLS transport's own SRTP session (the same replay window),
3. parses the RTP header (``relay._fast.parse_rtp``: CSRCs and header extension
   skipped, padding stripped; malformed packets dropped as aiortc drops them),
4. routes it as aiortc's ``RtpRouter`` would (learning the SSRC, so the device's
   sender reports still reach the receiver and RTCP receiver reports carry LSR/DLSR),
5. updates the receiver's per-SSRC statistics (``relay._fast.StreamStats``, a
   compiled drop-in for aiortc's ``StreamStatistics``: the receiver's RTCP RRs and
   ``getStats`` read the very same objects, whichever path fed them),
6. hands ``(sequence_number, payload)`` to ``UplinkSink.push_direct``.

Everything else keeps aiortc's path unchanged: STUN, DTLS (data channel), SRTCP,
other payload types, and every datagram while the DTLS transport is not connected.
Ordering: while an SRTP/SRTCP datagram may still be queued for the DTLS task (anything
queued when the path was armed, or one that went aiortc's way since), audio takes the slow
path too, until that queue has been seen empty, so a direct packet never overtakes a queued
RTP/RTCP one. Queued DTLS records (the data channel's SCTP) do not hold audio back: with the
worker's ICE port drained a batch at a time, a SACK and an audio packet often share a batch.

On the worker's ICE port (relay/media/mux.py) the path goes one step further down: ``arm()``
attaches to the port's compiled receiver (``relay._fast.MuxReceiver``), and once ``take`` has
taken a packet of an SSRC it arms the call's slot there with the same SRTP session, payload types,
SSRC, statistics object and the sink's ``UplinkAssembler``, so from then on steps 2-6 and the
sink's own per-packet work (flood bucket, reordering, Opus decoding, chunking) run in compiled code
inside the ``recvmmsg`` drain, with no Python call but a finished chunk's ``on_chunk``. Whatever would make ``take`` decline or
drop (SRTP/SRTCP going aiortc's way, DTLS no longer connected, the receiver disabled, another SSRC)
pauses or disarms the slot, and such datagrams come back here. Step 1 and the receiver's
synchronisation-source time are brought up to date by ``sync`` every 250 ms (the liveness check
reads that counter every few seconds).

One deliberate difference: header-extension *values* are not decoded (aiortc drops a
packet whose ``mid`` is not UTF-8, and a malformed audio-level value raises out of its
DTLS task; the audio receiver uses no extension value). Their RFC 8285 framing is
checked as aiortc checks it.

Every private aiortc/aioice name the path touches is a row of ``relay.media.compat.TABLE``,
checked once at start-up (written against aiortc 1.16, aioice 0.13).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import clock as aiortc_clock
from aiortc.rtcdtlstransport import State

from relay._fast import StreamStats, parse_rtp

log = logging.getLogger("relay.media")

DIRECT_ATTR = "_relay_direct_path"  # set on a StunProtocol whose datagram_received is hooked


class _StatsDict(dict):
    """The receiver's SSRC -> statistics map; aiortc's own inserts become ``StreamStats`` too."""

    def __setitem__(self, ssrc: int, stats: Any) -> None:
        if not isinstance(stats, StreamStats):
            stats = StreamStats(stats._clockrate)
        super().__setitem__(ssrc, stats)


class DirectReceivePath:
    """One call's direct SRTP -> sink path; ``arm()`` once ``receiver.receive()`` has run.

    ``sink`` needs ``push_direct(sequence_number, payload)`` and a ``direct_packets`` counter; an
    ``assembler`` (what the worker's ICE port is armed with instead of ``push_direct``) and ``sync()``
    (its counters into the metrics, called every 250 ms with the port's) are used when it has them.
    """

    def __init__(self, receiver: Any, sink: Any) -> None:
        self._receiver = receiver
        self._sink = sink
        self.armed = False
        self._streams = _StatsDict()
        receiver._RTCRtpReceiver__remote_streams = self._streams
        self._payload_types: frozenset[int] = frozenset()
        self._clockrate = 48000
        self._dtls: Any = None
        self._srtp: Any = None
        self._queue: Any = None
        self._rtp_queued = False
        self._active_due = 0.0
        self._fast: list[tuple[Any, int]] = []  # (compiled receiver, slot) of the worker's ICE port
        self._fast_ssrc: int | None = None  # the SSRC the compiled slots take, while they take it

    def arm(self) -> bool:
        """Hook the ICE connection's sockets; False (aiortc's path stays) when the call does not qualify."""
        receiver, sink = self._receiver, self._sink
        dtls = receiver.transport
        codecs = receiver._RTCRtpReceiver__codecs
        wanted = sink.codec.name.lower()
        pts = [pt for pt, c in codecs.items() if c.name.lower() == wanted]
        router = dtls._rtp_router
        if dtls._state is not State.CONNECTED or dtls._rx_srtp is None or not pts:
            log.debug("direct uplink path not armed: DTLS %s, payload types %s", dtls.state, pts)
            return False
        if router.receivers != {receiver}:
            log.debug("direct uplink path not armed: %d RTP receivers on the transport", len(router.receivers))
            return False
        connection = dtls.transport._connection
        self._payload_types = frozenset(pts)
        self._clockrate = codecs[pts[0]].clockRate
        self._dtls, self._srtp, self._queue = dtls, dtls._rx_srtp, connection._queue
        self._rtp_queued = not self._queue.empty()  # what is queued now may be RTP
        for protocol in connection._protocols:
            if getattr(protocol, DIRECT_ATTR, None) is None:
                protocol.datagram_received = self._hook(protocol.datagram_received)
                setattr(protocol, DIRECT_ATTR, self)
                attach = getattr(protocol.transport, "attach_direct", None)  # the worker's ICE port
                if attach is not None:
                    try:
                        self._fast.append(attach(self))
                    except KeyError:  # its route is gone (the call is ending)
                        pass
        if self._fast:
            dtls.on("statechange", self._pause_fast)
        self.armed = True
        return True

    # -- the compiled path of the worker's ICE port
    def _arm_fast(self, ssrc: int, stats: StreamStats) -> None:
        # the sink's assembler: the compiled port feeds a compiled one from C (no Python per packet)
        push = getattr(self._sink, "assembler", None)
        if push is None:
            push = self._sink.push_direct
        for receiver, slot in self._fast:
            try:
                receiver.arm(slot, self._srtp, self._payload_types, ssrc, stats, push)
            except KeyError:  # the slot was freed: the call's route is gone
                continue
        self._fast_ssrc = ssrc

    def _pause_fast(self) -> None:
        if self._fast_ssrc is None:
            return
        self._fast_ssrc = None
        for receiver, slot in self._fast:
            try:
                receiver.pause(slot)
            except KeyError:
                pass

    def detach(self, receiver: Any, slot: int) -> None:
        """The port freed the slot (the call's route is gone): never touch it again."""
        self._fast = [(r, s) for r, s in self._fast if not (r is receiver and s == slot)]

    def sync(self, counts: tuple[int, int, int, int]) -> None:
        """What the compiled slot took since the last call (the port calls this every 250 ms):
        aiortc's transport counters and the receiver's active SSRC; and the slot stops taking when
        the call no longer qualifies (checked here, as ``take`` checks it per packet)."""
        packets, octets, srtp_dropped, rtp_dropped = counts
        dtls = self._dtls
        if packets:
            dtls._RTCDtlsTransport__rx_bytes += octets
            dtls._RTCDtlsTransport__rx_packets += packets
            if self._fast_ssrc is not None:
                self._receiver._RTCRtpReceiver__active_ssrc[self._fast_ssrc] = aiortc_clock.current_datetime()
        if srtp_dropped or rtp_dropped:
            log.debug("direct uplink path: %d SRTP and %d RTP failures dropped", srtp_dropped, rtp_dropped)
        sink_sync = getattr(self._sink, "sync", None)
        if sink_sync is not None:
            sink_sync()  # the assembler's counters, into the worker's metrics
        if (dtls._state is not State.CONNECTED or not self._receiver._enabled or self._sink.closed
                or dtls._rx_srtp is not self._srtp):
            self._pause_fast()

    def _hook(self, original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        take = self.take

        def datagram_received(data: bytes, addr: Any) -> None:
            if data and 127 < data[0] < 192:
                if take(data):
                    return
                self._rtp_queued = True  # SRTP/SRTCP going aiortc's way: later audio must not overtake it
                self._pause_fast()
            original(data, addr)

        return datagram_received

    def take(self, data: bytes) -> bool:
        """Handle one SRTP datagram directly; False: it is not ours to take (aiortc's path gets it)."""
        if len(data) < 12:
            return False
        b1 = data[1]
        if 191 < b1 < 209 or (b1 & 0x7F) not in self._payload_types:  # SRTCP, or another payload type
            return False
        if self._rtp_queued:  # never overtake RTP/RTCP queued for the DTLS task
            if not self._queue.empty():
                return False
            self._rtp_queued = False
        dtls = self._dtls
        if dtls._state is not State.CONNECTED:
            return False
        dtls._RTCDtlsTransport__rx_bytes += len(data)
        dtls._RTCDtlsTransport__rx_packets += 1
        try:
            plain = self._srtp.unprotect(data)
            payload_type, _marker, seq, timestamp, ssrc, payload = parse_rtp(plain)
        except pylibsrtp.Error as exc:
            log.debug("SRTP unprotect failed: %s", exc)
            return True
        except ValueError as exc:
            log.debug("RTP parsing failed: %s", exc)
            return True
        receiver = self._receiver
        if not receiver._enabled:
            return True
        now_s = time.time()
        stats = self._streams.get(ssrc)
        if stats is None:
            stats = self._route_new_ssrc(ssrc, payload_type)
            if stats is None:
                return True
        if now_s >= self._active_due:  # getSynchronizationSources: seen within 10 s; once a second is enough
            self._active_due = now_s + 1.0
            receiver._RTCRtpReceiver__active_ssrc[ssrc] = aiortc_clock.current_datetime()
        stats.update(seq, timestamp, now_s)
        self._sink.push_direct(seq, payload)
        if self._fast and self._fast_ssrc != ssrc:
            self._arm_fast(ssrc, stats)  # the next ones of this SSRC: in compiled code
        return True

    def _route_new_ssrc(self, ssrc: int, payload_type: int) -> StreamStats | None:
        """aiortc's ``RtpRouter.route_rtp`` for an SSRC not seen yet: learn it, or drop the packet."""
        router, receiver = self._dtls._rtp_router, self._receiver
        owner = router.ssrc_table.get(ssrc)
        if owner is None:
            if router.payload_type_table.get(payload_type, set()) != {receiver}:
                return None
            router.ssrc_table[ssrc] = receiver
        elif owner is not receiver:
            return None
        self._active_due = 0.0
        stats = self._streams[ssrc] = StreamStats(self._clockrate)
        return stats
