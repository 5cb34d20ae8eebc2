"""What the device SDK (``relay.client``) needs of aiortc and has no public door for, per instance.

- ``tap_rtp(receiver, handle)``: ``RTCRtpReceiver._handle_rtp_packet`` replaced on that one receiver:
  the SDK sees every RTP packet (sequence, timestamp, payload) instead of aiortc's decoded frames.
- ``negotiate_sctp(pc)``: ``RTCPeerConnection.__createSctpTransport`` puts SCTP in the offer without
  a data channel, so one can be opened later (as ESP32 devices do).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


def tap_rtp(receiver: Any, handle: Callable[..., Awaitable[None]]) -> None:
    """``await handle(packet, arrival_time_ms)`` for each RTP packet ``receiver`` gets (before packets flow)."""
    receiver._handle_rtp_packet = handle


def negotiate_sctp(pc: Any) -> None:
    """Negotiate SCTP in ``pc``'s next offer with no data channel open yet."""
    pc._RTCPeerConnection__createSctpTransport()
