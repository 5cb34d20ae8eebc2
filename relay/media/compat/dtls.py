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
"""

from __future__ import annotations

import contextvars
import functools
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
