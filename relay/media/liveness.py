"""Signs of life from a WebRTC device: is anything still arriving from it?

A device that vanishes (unplugged, out of range, crashed) sends no close: aiortc
notices only when ICE consent fails, ~30 s later, and the call was billed for them.
A live device sends RTP while unmuted and RTCP reports about once a second in any
case (a muted device too), and SCTP for its data channel. All of these arrive
through the peer's DTLS transport, whose receive counter aiortc and relay's direct
uplink path (``relay.media.rtp_in``) both bump; ``DeviceLiveness.packets()`` reads it.
(STUN consent checks, ~every 5 s, arrive beside it and are not counted: RTCP alone
arrives five times as often.)

The counter is aiortc's private one, read through ``relay.media.compat.dtls.rx_packets``.
"""

from __future__ import annotations

from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport

from relay.media.compat.dtls import rx_packets


class DeviceLiveness:
    """Counts what arrived from one peer connection's device (RTP, RTCP, SCTP)."""

    def __init__(self, pc: Any) -> None:
        transports: dict[int, RTCDtlsTransport] = {}
        for transceiver in pc.getTransceivers():
            transport = transceiver.receiver.transport
            if transport is not None:
                transports[id(transport)] = transport
        if pc.sctp is not None:
            transports[id(pc.sctp.transport)] = pc.sctp.transport
        self._transports = list(transports.values())

    def packets(self) -> int:
        return sum(rx_packets(t) for t in self._transports)
