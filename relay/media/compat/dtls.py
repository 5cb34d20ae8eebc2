"""aiortc's DTLS: a peer connection with a given certificate, a certificate's OpenSSL context, and the
DTLS transport's private state relay reads.

**The certificate of a new connection.** ``RTCPeerConnection.__init__`` generates a new key and
certificate (``RTCCertificate.generateCertificate()``, looked up as a global of
``aiortc.rtcpeerconnection``) and has no parameter to pass one. ``peer_connection(config, cert)``
runs aiortc's own ``__init__`` code on a new ``RTCPeerConnection`` with one global rebound:
``RTCCertificate`` names ``_Given``, which hands out ``cert``. Per instance: aiortc's module, class
and function stay untouched, so every other ``RTCPeerConnection`` in the process (built before or
after, inside relay's call set-up or not) generates its own certificate as before. The rebound
function is made once (``_relay_init``), from the ``__init__`` installed at that time.

**A certificate's OpenSSL context.** ``ContextCachingCertificate`` (an ``RTCCertificate`` subclass,
so per instance again) overrides ``_create_ssl_context``: aiortc's context, adjusted once by the
subclass's ``adjust_context`` and kept per SRTP profile list.

**Flights in whole records.** aiortc's ``RTCDtlsTransport._write_ssl`` sends ``bio_read(1500)``: at
most 1500 bytes of OpenSSL's memory BIO per call. The BIO is a byte stream of DTLS records (OpenSSL
cannot learn an MTU from a memory BIO, so it cuts handshake messages into records of its 256-byte
minimum MTU), and a flight longer than 1500 bytes (a 3072- or 4096-bit RSA certificate and its
signature: 1.9-2.3 KB) is cut inside a record. The receiver drops the cut record, the rest of the
flight starts mid-record, each retransmission is cut at the same place, and the handshake never
completes (aiortc issue #828). ``send_whole_records(transport)`` replaces ``_write_ssl`` on one
transport: everything pending is read and sent as datagrams of whole records, packed up to
``DTLS_MTU_BYTES`` (1200, what browsers and Pion use). ``whole_record_datagrams`` is the packing.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import types
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport, State
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

_given: contextvars.ContextVar[RTCCertificate | None] = contextvars.ContextVar("relay_dtls_given", default=None)


class _Given:
    """``RTCCertificate`` as relay's copy of ``RTCPeerConnection.__init__`` sees it."""

    @staticmethod
    def generateCertificate() -> RTCCertificate:  # noqa: N802 (aiortc's name)
        cert = _given.get()
        if cert is None:
            raise RuntimeError("relay.media.compat.dtls: a certificate is handed out only inside peer_connection()")
        return cert


@functools.cache
def _relay_init() -> types.FunctionType:
    """aiortc's ``RTCPeerConnection.__init__``, its global ``RTCCertificate`` bound to ``_Given``."""
    init = RTCPeerConnection.__init__
    code = init.__code__
    if "RTCCertificate" not in code.co_names:
        raise RuntimeError("aiortc's RTCPeerConnection.__init__ no longer looks up RTCCertificate "
                           "(relay.media.compat.dtls needs updating)")
    namespace = dict(init.__globals__)
    namespace["RTCCertificate"] = _Given
    relay_init = types.FunctionType(code, namespace, init.__name__, init.__defaults__, init.__closure__)
    relay_init.__kwdefaults__ = init.__kwdefaults__
    relay_init.__qualname__ = init.__qualname__
    return relay_init


def peer_connection(configuration: RTCConfiguration, certificate: RTCCertificate) -> RTCPeerConnection:
    """A new ``RTCPeerConnection`` whose DTLS transports use ``certificate``."""
    pc = RTCPeerConnection.__new__(RTCPeerConnection)
    token = _given.set(certificate)
    try:
        _relay_init()(pc, configuration)
    finally:
        _given.reset(token)
    certs = certificates(pc)
    if not certs or certs[0] is not certificate:
        raise RuntimeError("aiortc's RTCPeerConnection did not take relay's DTLS certificate "
                           "(relay.media.compat.dtls needs updating)")
    return pc


def certificates(pc: RTCPeerConnection) -> list[RTCCertificate]:
    """The certificates ``pc``'s DTLS transports are created with."""
    return list(getattr(pc, "_RTCPeerConnection__certificates", None) or [])


def generate_key_and_certificate() -> tuple[ec.EllipticCurvePrivateKey, Any]:
    """A new key and self-signed certificate, as aiortc makes them (P-256, SHA-256, valid 30 days)."""
    base = RTCCertificate.generateCertificate()
    return base._key, base._cert


class ContextCachingCertificate(RTCCertificate):
    """An aiortc certificate that builds its OpenSSL context once per SRTP profile list."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: Any) -> None:
        super().__init__(key=key, cert=cert)
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

    def adjust_context(self, ctx: SSL.Context) -> None:
        """Change aiortc's context before it is kept (subclasses)."""

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> SSL.Context:
        key = tuple(p.openssl_profile for p in srtp_profiles)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = super()._create_ssl_context(srtp_profiles)
            self.adjust_context(ctx)
            self._contexts[key] = ctx
        return ctx


# -- flights in whole records -------------------------------------------------------------------

DTLS_MTU_BYTES = 1200  # a datagram of relay's handshake flights carries at most this much (whole records)
RECORD_HEADER_BYTES = 13  # content type, version, epoch, sequence number, length (RFC 6347, 4.1)
BIO_READ_BYTES = 16384  # one bio_read; the BIO is read until it is empty


def whole_record_datagrams(data: bytes, mtu_bytes: int = DTLS_MTU_BYTES) -> list[bytes]:
    """``data`` (DTLS records back to back) as datagrams of whole records, each at most ``mtu_bytes``
    unless one record alone is longer (it then goes alone: it cannot be split). Bytes after the last
    whole record (never written by OpenSSL) go in a datagram of their own."""
    datagrams: list[bytes] = []
    start = end = 0
    while end + RECORD_HEADER_BYTES <= len(data):
        record_end = end + RECORD_HEADER_BYTES + int.from_bytes(data[end + 11:end + 13], "big")
        if record_end > len(data):
            break
        if record_end - start > mtu_bytes and end > start:
            datagrams.append(data[start:end])
            start = end
        end = record_end
    if end > start:
        datagrams.append(data[start:end])
    if end < len(data):
        datagrams.append(data[end:])
    return datagrams


def send_whole_records(transport: RTCDtlsTransport, mtu_bytes: int = DTLS_MTU_BYTES) -> None:
    """``transport`` sends what OpenSSL wrote as datagrams of whole records (in place of aiortc's
    ``_write_ssl``, on this instance only). Call before the handshake starts."""

    async def write_ssl() -> None:
        pending = bytearray()
        ssl = transport._ssl
        if ssl is None:
            return
        while True:
            try:
                chunk = ssl.bio_read(BIO_READ_BYTES)
            except SSL.Error:  # WantReadError: the BIO is empty
                break
            if not chunk:
                break
            pending += chunk
        for datagram in whole_record_datagrams(bytes(pending), mtu_bytes):
            await transport.transport._send(datagram)
            transport._RTCDtlsTransport__tx_bytes += len(datagram)  # type: ignore[attr-defined]
            transport._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]

    if not inspect.iscoroutinefunction(getattr(type(transport), "_write_ssl", None)):
        raise RuntimeError("aiortc's RTCDtlsTransport has no async _write_ssl any more "
                           "(relay.media.compat.dtls needs updating)")
    transport._write_ssl = write_ssl  # type: ignore[method-assign]


# -- the DTLS transport's private state (read only) ---------------------------------------------

def ssl_connection(transport: RTCDtlsTransport) -> SSL.Connection | None:
    """The transport's OpenSSL connection (None before ``start()``)."""
    return getattr(transport, "_ssl", None)


def role(transport: RTCDtlsTransport) -> str:
    """``"client"``, ``"server"`` or ``"auto"`` (before the SDP set it)."""
    return transport._role


def connecting(transport: RTCDtlsTransport) -> bool:
    """The handshake is under way."""
    return transport._state == State.CONNECTING


def rx_packets(transport: RTCDtlsTransport) -> int:
    """Datagrams received from the peer (RTP, RTCP, SCTP; aiortc's counter, bumped by relay's direct
    uplink path too)."""
    return transport._RTCDtlsTransport__rx_packets  # type: ignore[attr-defined]


def prepare() -> None:
    """Build relay's copy of ``RTCPeerConnection.__init__`` now (``RuntimeError`` if aiortc changed)."""
    _relay_init()
