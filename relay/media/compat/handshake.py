"""Per-instance hooks of a call's handshakes: relay's ICE transport's sends, the SCTP association's state.

- ``SendHook(ice_transport, send)``: ``RTCIceTransport._send`` is an instance attribute (aiortc sets it
  in ``__init__``); the hook replaces it on that one transport until ``remove()``, giving the
  original to call. ``relay.media.handshake.FirstFlight`` captures relay's first DTLS flight with it.
- ``on_association_closed(sctp, callback)``: aiortc's SCTP association emits no event when it closes;
  ``RTCSctpTransport._set_state`` is its one state choke point, wrapped on that one instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class SendHook:
    """``send(data)`` in place of ``ice_transport._send`` until ``remove()``; ``original`` still sends."""

    def __init__(self, ice_transport: Any, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._ice = ice_transport
        self._send = send
        self.original: Callable[[bytes], Awaitable[None]] = ice_transport._send
        ice_transport._send = send

    def remove(self) -> None:
        if self._ice.__dict__.get("_send") == self._send:
            self._ice._send = self.original


def on_association_closed(sctp: Any, callback: Callable[[], None]) -> None:
    """``callback()`` (after aiortc's own transition) each time ``sctp``'s association becomes CLOSED."""
    original = sctp._set_state
    closed_state = type(sctp).State.CLOSED

    def set_state(state: Any) -> None:
        was = sctp._association_state
        original(state)
        if state == closed_state and was != closed_state:
            callback()

    sctp._set_state = set_state
