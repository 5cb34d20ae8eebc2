"""One DTLS certificate per worker, shared by the worker's peer connections (rotated).

aiortc's ``RTCPeerConnection()`` generates a fresh ECDSA P-256 key and self-signed certificate
for every connection, recomputes the certificate's three fingerprints (SHA-256/384/512) each
time the SDP is written (four times per answer), and builds a new OpenSSL context (certificate
and key converted again) for every DTLS handshake. That is ~0.45 ms of event-loop CPU per call
set-up (measured; docs/ops.md, "Call set-up"), for nothing a server needs: the DTLS certificate
only has to match the ``a=fingerprint`` of the answer that carries it.

relay therefore keeps one certificate per worker process (``WorkerCertificates``): generated at
start, replaced every ``dtls_cert_rotate_s`` (default a day) on the next set-up after that.
A call keeps the certificate it was answered with for its whole life (its connection holds
it), so rotation never touches live calls. The certificate caches its fingerprints and its
OpenSSL context (one per SRTP profile list; session cache off, so no DTLS session is ever
resumed across connections). Each answer's ``a=fingerprint`` is the certificate's, as before.

aiortc's constructor has no parameter for the certificate: ``peer_connection(config, cert)``
(``relay.media.compat.dtls``) builds a connection with the given one, per instance (other
``RTCPeerConnection``s in the process, e.g. test devices, generate their own as before), and
raises ``RuntimeError`` when aiortc did not take it rather than silently using another one.
The context cache is ``relay.media.compat.dtls.ContextCachingCertificate``; this module chooses
what goes into the context (the suites, the alert recorder, no session cache).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsFingerprint
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from relay.media import handshake
from relay.media.compat.dtls import ContextCachingCertificate, generate_key_and_certificate, peer_connection

__all__ = ["CIPHER_LIST", "WorkerCertificate", "WorkerCertificates", "configure", "current", "generate",
           "peer_connection", "worker_certificates"]

log = logging.getLogger("relay.media")

# DTLS 1.2 suites relay offers (as the DTLS client) or accepts (as the server), best first. aiortc offers
# only the ECDHE-ECDSA ones; a server whose certificate is RSA (GStreamer webrtcbin, libpeer on ESP32)
# then finds no shared cipher. A server picks a suite its own certificate can sign, so offering both
# families costs nothing. OpenSSL's default security level stays: the device's key size is not checked
# against it (the certificate is authenticated by its fingerprint; docs/media.md has the RSA sizes).
CIPHER_LIST = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
               b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
               b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
               b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA")


class WorkerCertificate(ContextCachingCertificate):
    """An aiortc certificate that caches its fingerprints and OpenSSL contexts."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: Any) -> None:
        super().__init__(key=key, cert=cert)
        self.created_s = time.monotonic()
        self._fingerprints = super().getFingerprints()

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:  # noqa: N802 (aiortc's name)
        """The SHA-256 fingerprint only (what browsers send). aiortc writes SHA-256, -384 and -512
        lines; libdatachannel keeps the last one (sha-512) while its DTLS transport, when relay's
        ClientHello arrives before it stored the answer, assumes SHA-256: the algorithms then differ
        and it refuses relay with unknown_ca (2 of 12 calls; 0 of 27 with one line)."""
        return [f for f in self._fingerprints if f.algorithm == "sha-256"]

    def adjust_context(self, ctx: SSL.Context) -> None:
        ctx.set_cipher_list(CIPHER_LIST)
        ctx.set_info_callback(handshake.info_callback)  # records alerts: why a handshake failed
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)  # a shared context: never resume across calls

    @property
    def sha256(self) -> str:
        """The SHA-256 fingerprint as it appears in ``a=fingerprint:sha-256 ...``."""
        return next(f.value for f in self._fingerprints if f.algorithm == "sha-256")


def generate() -> WorkerCertificate:
    """A new key and self-signed certificate, as aiortc makes them (P-256, SHA-256, valid 30 days)."""
    key, cert = generate_key_and_certificate()
    return WorkerCertificate(key=key, cert=cert)


MAX_ROTATE_S = 25 * 86400.0  # aiortc's certificates are valid for 30 days
DEFAULT_ROTATE_S = 86400.0


class WorkerCertificates:
    """This worker's current certificate, replaced when older than ``rotate_s``."""

    def __init__(self, rotate_s: float = DEFAULT_ROTATE_S) -> None:
        if not 0 < rotate_s <= MAX_ROTATE_S:
            raise ValueError(f"the DTLS certificate rotation must be within 0 < s <= {MAX_ROTATE_S:.0f}")
        self.rotate_s = float(rotate_s)
        self._current = generate()
        self.rotations = 0

    def current(self) -> WorkerCertificate:
        if time.monotonic() - self._current.created_s >= self.rotate_s:
            self.rotate()
        return self._current

    def rotate(self) -> WorkerCertificate:
        """Start using a new certificate for new calls (live calls keep theirs)."""
        self._current = generate()
        self.rotations += 1
        log.info("DTLS certificate rotated (sha-256 %s...)", self._current.sha256[:23])
        return self._current


_worker: WorkerCertificates | None = None


def configure(rotate_s: float) -> WorkerCertificates:
    """Start this process's certificates (the media plane does, at startup): a new certificate now."""
    global _worker
    _worker = WorkerCertificates(rotate_s)
    return _worker


def worker_certificates() -> WorkerCertificates:
    """This process's certificates (configured with the default rotation if nobody did)."""
    global _worker
    if _worker is None:
        _worker = WorkerCertificates()
    return _worker


def current() -> WorkerCertificate:
    """The certificate for a new call."""
    return worker_certificates().current()
