"""The device-side handshakes of a call: why one failed, and a faster first DTLS flight.

**Failure reasons.** aiortc reports one ``connectionState`` of ``"failed"`` for an ICE failure
and a DTLS failure alike, and logs the DTLS error at debug level only (with OpenSSL 3.2+ its
error list is often empty). relay's DTLS contexts (``relay.media.dtls``) carry an info callback
that records the last TLS alert each connection sent or received (``alert_of``);
``classify_failure`` turns the transports' states into the call-end reason (``ice_failed``,
``dtls_failed``, ``sctp_failed``) and a DTLS detail (``sent handshake_failure``,
``received bad_certificate``, ``fingerprint_mismatch``, ``weak_device_key``, ...). A device key
refused by relay's allowlist (``relay.media.dtls.device_key_refusal``) is recorded by
``refuse_device_key`` and named ``weak_device_key`` whatever alert OpenSSL then sent.

**SCTP.** aiortc's SCTP association emits no event when it closes. ``watch_sctp`` hooks the
association's state on that one instance (``relay.media.compat.handshake``) and reports a close
that happens before any data channel opened, while DTLS is up (a device that fails or aborts SCTP).

**First flight.** relay is the DTLS client (``a=setup:active``, docs/media.md): its ClientHello is
the handshake's first flight. When it is lost (the device's DTLS server is not listening yet, as
werift's is not until its own ICE check completes, or the packet is dropped) OpenSSL retransmits
after 1 s, and the ``cryptography`` bindings do not expose ``DTLS_set_timer_cb`` to lower that.
``FirstFlight`` captures the ClientHello as relay's ICE transport sends it (a per-instance hook,
``relay.media.compat.handshake.SendHook``) and sends the same
datagram again after ``RESEND_AFTER_S`` (0.3 s, then 0.6 s) while nothing has come back from the
device; OpenSSL's own timer still runs. A duplicate that does arrive is dropped by the device's
replay window (same record sequence number) or answered as a retransmission: harmless.

aiortc's internals are reached through ``relay.media.compat`` only (``dtls``: the transport's state,
``handshake``: the hooks).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsTransport
from OpenSSL import SSL

from relay.media.compat import dtls as compat_dtls
from relay.media.compat.handshake import SendHook, on_association_closed

log = logging.getLogger("relay.media")

RESEND_AFTER_S = (0.3, 0.6)  # first-flight resends, seconds after the ClientHello (OpenSSL's own: 1 s, 3 s, ...)
DTLS_HANDSHAKE = 22  # TLS record content type of a handshake record

# RFC 8446 / 5246 alert descriptions relay may see
ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
    100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension",
}

_alerts: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()
_refused_keys: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()
WEAK_DEVICE_KEY = "weak_device_key"


def refuse_device_key(conn: SSL.Connection, why: str) -> None:
    """Record that ``conn``'s handshake fails because the device's key was refused (``why``: which key)."""
    _refused_keys[conn] = why  # logged with the call's failure (relay.media.peer)


def refused_key_of(transport: RTCDtlsTransport) -> str | None:
    """Why the device's key was refused on ``transport`` (``"RSA 512 bits (minimum 2048)"``), or None."""
    ssl = compat_dtls.ssl_connection(transport)
    return _refused_keys.get(ssl) if ssl is not None else None


def info_callback(conn: SSL.Connection, where: int, ret: int) -> None:
    """OpenSSL's info callback (set on relay's DTLS contexts): remember each connection's last alert."""
    if where & SSL.SSL_CB_ALERT:
        name = ALERTS.get(ret & 0xFF, f"alert_{ret & 0xFF}")
        if name != "close_notify":
            _alerts[conn] = ("sent " if where & SSL.SSL_CB_WRITE else "received ") + name


def alert_of(transport: RTCDtlsTransport) -> str | None:
    """The last TLS alert ``transport``'s connection sent or received (``"sent handshake_failure"``)."""
    ssl = compat_dtls.ssl_connection(transport)
    return _alerts.get(ssl) if ssl is not None else None


def dtls_detail(transport: RTCDtlsTransport) -> str:
    """Why ``transport``'s handshake failed, as far as can be told."""
    if refused_key_of(transport) is not None:
        return WEAK_DEVICE_KEY
    alert = alert_of(transport)
    if alert is not None:
        return alert
    if getattr(transport, "encrypted", False):
        return "fingerprint_mismatch"  # OpenSSL finished; aiortc's fingerprint (or SRTP profile) check failed
    if compat_dtls.ssl_connection(transport) is None:
        return "not_started"
    return "no_alert"  # e.g. the ICE transport closed under the handshake


def classify_failure(dtls_transport: RTCDtlsTransport | None) -> tuple[str, str | None]:
    """``(end reason, DTLS detail or None)`` for a peer connection whose state became ``failed``."""
    if dtls_transport is None:
        return "ice_failed", None
    if dtls_transport.transport.state == "failed":
        return "ice_failed", None
    if dtls_transport.state == "failed":
        return "dtls_failed", dtls_detail(dtls_transport)
    return "ice_failed", None


class FirstFlight:
    """Resends relay's first DTLS flight (ClientHello) early while the device has not answered."""

    def __init__(self, transport: RTCDtlsTransport, resend_after_s: tuple[float, ...] = RESEND_AFTER_S) -> None:
        self._dtls = transport
        self._ice = transport.transport
        self._resend_after_s = resend_after_s
        self._loop = asyncio.get_running_loop()
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._rx_at_capture = 0
        self.flight: bytes | None = None
        self.resends = 0
        self._hook = SendHook(self._ice, self._send)

    async def _send(self, data: bytes) -> None:
        dtls = self._dtls
        if self.flight is None:
            client_handshaking = compat_dtls.role(dtls) == "client" and compat_dtls.connecting(dtls)
            if data[:1] == bytes([DTLS_HANDSHAKE]) and client_handshaking:
                self.flight = bytes(data)
                self._rx_at_capture = compat_dtls.rx_packets(dtls)
                self._hook.remove()
                self._timers = [self._loop.call_later(s, self._resend) for s in self._resend_after_s]
            elif not client_handshaking:
                self._hook.remove()  # relay is the DTLS server, or the handshake is over: nothing to watch
        await self._hook.original(data)

    def _answered(self) -> bool:
        dtls = self._dtls
        return not compat_dtls.connecting(dtls) or compat_dtls.rx_packets(dtls) != self._rx_at_capture

    def _resend(self) -> None:
        if self.flight is None or self._answered():
            self.stop()
            return
        self.resends += 1
        log.debug("DTLS: no answer to the ClientHello yet; sent it again")
        task = self._loop.create_task(self._resend_now(self.flight))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resend_now(self, data: bytes) -> None:
        try:
            await self._hook.original(data)
        except ConnectionError:
            self.stop()

    def stop(self) -> None:
        self._hook.remove()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()


def watch_sctp(sctp: Any, dtls_transport: RTCDtlsTransport, on_failed: Callable[[], None],
               channel_opened: Callable[[], bool]) -> None:
    """Call ``on_failed`` when ``sctp``'s association closes before any data channel opened while DTLS is up."""

    def closed() -> None:
        if not channel_opened() and dtls_transport.state == "connected":
            on_failed()

    on_association_closed(sctp, closed)
