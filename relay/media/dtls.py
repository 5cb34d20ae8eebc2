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
what goes into the context (the suites, the alert recorder, no session cache, the device key check).

**The device's key.** A device's certificate is self-signed and authenticated by the answer's
``a=fingerprint`` only, so OpenSSL's security level never judges its key: a 512-bit RSA key (old
libpeer builds on the ESP32) would pass. relay's contexts carry a verify callback that checks the
device's certificate key against an allowlist (``device_key_refusal``): RSA of at least
``dtls_min_rsa_bits`` (default 2048) with an odd public exponent >= 3, or ECDSA on P-256, P-384 or
P-521. Anything else fails the handshake (the device receives a TLS alert); the call ends as
``dtls_failed``, counted as ``relay_dtls_failures_total{reason="weak_device_key"}``. The key is
only seen in the DTLS handshake, after ``POST /v1/realtime`` answered, so there is no HTTP error
for it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiortc.rtcdtlstransport import RTCDtlsFingerprint
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL, crypto

from relay.media import handshake
from relay.media.compat.dtls import ContextCachingCertificate, generate_key_and_certificate, peer_connection

__all__ = ["ALLOWED_EC_CURVES", "CIPHER_LIST", "DEFAULT_MIN_RSA_BITS", "MIN_RSA_BITS_FLOOR", "WorkerCertificate",
           "WorkerCertificates", "configure", "current", "device_key_refusal", "generate", "peer_connection",
           "worker_certificates"]

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


DEFAULT_MIN_RSA_BITS = 2048  # NIST SP 800-131A; OpenSSL's security level 2
MIN_RSA_BITS_FLOOR = 1024  # the lowest dtls_min_rsa_bits an operator may set (later libpeer releases)
MAX_RSA_BITS = 16384  # the highest dtls_min_rsa_bits (OpenSSL's own limit for RSA keys)
ALLOWED_EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def device_key_refusal(key: Any, min_rsa_bits: int = DEFAULT_MIN_RSA_BITS) -> str | None:
    """Why a device's certificate key is refused (``"RSA 512 bits (minimum 2048)"``), or None: the allowlist."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < min_rsa_bits:
            return f"RSA {key.key_size} bits (minimum {min_rsa_bits})"
        exponent = key.public_numbers().e
        if exponent < 3 or exponent % 2 == 0:
            return f"RSA public exponent {exponent}"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in ALLOWED_EC_CURVES:
            return None
        return f"EC curve {key.curve.name} (allowed: {', '.join(ALLOWED_EC_CURVES.values())})"
    return f"{type(key).__name__.removeprefix('_')} keys (allowed: RSA, ECDSA)"


def _key_check(min_rsa_bits: int) -> Any:
    """The verify callback of relay's DTLS contexts: the device's certificate key must pass the allowlist."""

    def verify(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        if depth != 0:
            return True  # a chain above the device's own certificate: only the fingerprinted one counts
        try:
            why = device_key_refusal(cert.to_cryptography().public_key(), min_rsa_bits)
        except (ValueError, TypeError) as exc:  # a key cryptography cannot load
            why = f"unreadable key ({exc})"
        if why is None:
            return True
        handshake.refuse_device_key(conn, why)
        return False

    return verify


class WorkerCertificate(ContextCachingCertificate):
    """An aiortc certificate that caches its fingerprints and OpenSSL contexts."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: Any, min_rsa_bits: int = DEFAULT_MIN_RSA_BITS) -> None:
        super().__init__(key=key, cert=cert)
        self.min_rsa_bits = min_rsa_bits
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
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _key_check(self.min_rsa_bits))

    @property
    def sha256(self) -> str:
        """The SHA-256 fingerprint as it appears in ``a=fingerprint:sha-256 ...``."""
        return next(f.value for f in self._fingerprints if f.algorithm == "sha-256")


def generate(min_rsa_bits: int = DEFAULT_MIN_RSA_BITS) -> WorkerCertificate:
    """A new key and self-signed certificate, as aiortc makes them (P-256, SHA-256, valid 30 days)."""
    key, cert = generate_key_and_certificate()
    return WorkerCertificate(key=key, cert=cert, min_rsa_bits=min_rsa_bits)


MAX_ROTATE_S = 25 * 86400.0  # aiortc's certificates are valid for 30 days
DEFAULT_ROTATE_S = 86400.0


class WorkerCertificates:
    """This worker's current certificate, replaced when older than ``rotate_s``."""

    def __init__(self, rotate_s: float = DEFAULT_ROTATE_S, min_rsa_bits: int = DEFAULT_MIN_RSA_BITS) -> None:
        if not 0 < rotate_s <= MAX_ROTATE_S:
            raise ValueError(f"the DTLS certificate rotation must be within 0 < s <= {MAX_ROTATE_S:.0f}")
        if not MIN_RSA_BITS_FLOOR <= min_rsa_bits <= MAX_RSA_BITS:
            raise ValueError(f"the devices' minimum RSA key size must be within {MIN_RSA_BITS_FLOOR}..{MAX_RSA_BITS} bits")
        self.rotate_s = float(rotate_s)
        self.min_rsa_bits = min_rsa_bits
        self._current = generate(min_rsa_bits)
        self.rotations = 0

    def current(self) -> WorkerCertificate:
        if time.monotonic() - self._current.created_s >= self.rotate_s:
            self.rotate()
        return self._current

    def rotate(self) -> WorkerCertificate:
        """Start using a new certificate for new calls (live calls keep theirs)."""
        self._current = generate(self.min_rsa_bits)
        self.rotations += 1
        log.info("DTLS certificate rotated (sha-256 %s...)", self._current.sha256[:23])
        return self._current


_worker: WorkerCertificates | None = None


def configure(rotate_s: float, min_rsa_bits: int = DEFAULT_MIN_RSA_BITS) -> WorkerCertificates:
    """Start this process's certificates (the media plane does, at startup): a new certificate now."""
    global _worker
    _worker = WorkerCertificates(rotate_s, min_rsa_bits)
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
