"""DTLS roles and cipher suites: relay's peer against aiortc devices with RSA or ECDSA certificates, and
the device key allowlist (RSA below ``dtls_min_rsa_bits`` refused).

relay's certificate is ECDSA P-256. The device's certificate and the suites it offers are set per
test; the device's role is set by its offer's ``a=setup`` (``actpass``: relay answers ``active`` and
is the DTLS client; ``active``: relay answers ``passive`` and is the server). What is checked is the
device's own view: its connection state, the data channel opening, and the suite both ends agreed.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCCertificate, generate_certificate
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL

from relay.call.metrics import MediaMetrics
from relay.media import dtls, handshake
from relay.media.clock import MediaClock
from relay.media.compat import dtls as compat_dtls

from .test_peer import Loopback, Tone, wait_for

RSA_SUITES = b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
ECDSA_SUITES = b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA"
OPENSSL_DEFAULT = b"DEFAULT"  # what a stock OpenSSL client offers (GStreamer's dtlsdec, libpeer's mbedtls alike: both families)


class DeviceCertificate(RTCCertificate):
    """A device certificate (RSA or ECDSA) whose DTLS context offers exactly ``suites``.

    ``@SECLEVEL=0`` on the device side only: it stands in for embedded stacks (mbedtls) that have
    no security levels, so relay's own limit is what is tested."""

    def __init__(self, key, suites: bytes) -> None:
        super().__init__(key=key, cert=generate_certificate(key))
        self.suites = suites

    def _create_ssl_context(self, srtp_profiles):
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_cipher_list(self.suites + b":@SECLEVEL=0")
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        ctx.use_certificate(self._cert)
        ctx.use_privatekey(self._key)
        ctx.set_tlsext_use_srtp(b":".join(p.openssl_profile for p in srtp_profiles))
        return ctx


def rsa_cert(bits: int, suites: bytes) -> DeviceCertificate:
    if bits < 1024:  # cryptography generates no keys this small; OpenSSL's command line still does
        pem = subprocess.run(["openssl", "genrsa", str(bits)], check=True, capture_output=True).stdout
        return DeviceCertificate(load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True), suites)
    return DeviceCertificate(rsa.generate_private_key(65537, bits), suites)


def ecdsa_cert(suites: bytes = ECDSA_SUITES) -> DeviceCertificate:
    return DeviceCertificate(ec.generate_private_key(ec.SECP256R1()), suites)


@pytest.fixture
async def plane():
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    dtls.configure(3600)
    yield metrics, clock
    await clock.stop()


class Attempt:
    def __init__(self, device, channel, relay: Loopback) -> None:
        self.device, self.channel, self.relay = device, channel, relay

    @property
    def relay_dtls(self):
        return self.relay.peer.pc.getTransceivers()[0].receiver.transport

    @property
    def device_dtls(self):
        return self.device.getTransceivers()[0].receiver.transport

    async def close(self) -> None:
        await self.device.close()
        await self.relay.peer.close()


async def attempt(plane, cert: DeviceCertificate, *, device_role: str) -> Attempt:
    """A device with ``cert`` calls relay; ``device_role``: ``server`` (offers actpass) or ``client`` (active)."""
    metrics, clock = plane
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    device._RTCPeerConnection__certificates = [cert]  # before any transport is created
    device.addTrack(Tone(440))
    channel = device.createDataChannel("oai-events")
    await device.setLocalDescription(await device.createOffer())
    # the device sends its flights in whole records, as browsers, Pion and libpeer do (stock aiortc cuts
    # a flight longer than 1500 bytes inside a record: relay.media.compat.dtls, "Flights in whole records")
    compat_dtls.send_whole_records(device.getTransceivers()[0].receiver.transport)
    offer = device.localDescription.sdp
    assert "a=setup:actpass" in offer
    if device_role == "client":
        offer = offer.replace("a=setup:actpass", "a=setup:active")
    relay = Loopback(offer, metrics, clock)
    answer = await relay.peer.answer(offer)
    assert ("a=setup:active" if device_role == "server" else "a=setup:passive") in answer
    await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    result = Attempt(device, channel, relay)
    async with asyncio.timeout(15):
        while not (channel.readyState == "open" or relay.closed_reasons or device.connectionState == "failed"):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return result


def cipher(transport) -> str:
    return transport._ssl.get_cipher_name()


def device_cert(kind: str, device_role: str) -> DeviceCertificate:
    if kind == "ecdsa":
        return ecdsa_cert()
    if kind == "ecdsa384":
        return DeviceCertificate(ec.generate_private_key(ec.SECP384R1()), ECDSA_SUITES)
    return rsa_cert(int(kind[3:]), RSA_SUITES if device_role == "server" else OPENSSL_DEFAULT)


@pytest.mark.parametrize("device_role", ["server", "client"])
@pytest.mark.parametrize("kind", ["rsa2048", "rsa3072", "rsa4096", "ecdsa", "ecdsa384", "rsa1024 with dtls_min_rsa_bits 1024"])
async def test_rsa_and_ecdsa_devices_in_each_role(plane, kind: str, device_role: str) -> None:
    """Each allowed certificate type connects in each role, with the suites such a device offers: an RSA
    device acting as the DTLS server offers RSA suites only (its certificate cannot sign anything else);
    as the client it offers its library's defaults, which include ECDSA suites. A 1024-bit RSA device
    connects once the operator lowers ``dtls_min_rsa_bits`` to 1024. 3072- and 4096-bit RSA devices send
    flights longer than one 1500-byte datagram (certificate and signature) and connect too."""
    if kind.endswith("dtls_min_rsa_bits 1024"):
        dtls.configure(3600, min_rsa_bits=1024)
        kind = kind.split()[0]
    cert = device_cert(kind, device_role)
    a = await attempt(plane, cert, device_role=device_role)
    try:
        assert a.device.connectionState == "connected" and a.channel.readyState == "open", a.relay.closed_reasons
        assert a.device_dtls._role == device_role and a.relay_dtls.state == "connected"
        agreed = cipher(a.device_dtls)
        assert agreed == cipher(a.relay_dtls)
        # the suite follows the server's certificate: the device's when relay is the client
        expect = "ECDHE-RSA-" if kind.startswith("rsa") and device_role == "server" else "ECDHE-ECDSA-"
        assert agreed.startswith(expect), agreed
        # and the association carries data both ways
        got: list[str] = []
        a.channel.on("message", got.append)
        a.channel.send('{"type":"ping"}')
        await wait_for(lambda: got == ['{"type":"ack"}'])
    finally:
        await a.close()


@pytest.mark.parametrize("device_role", ["server", "client"])
@pytest.mark.parametrize("bits", [512, 1024, 2040])
async def test_small_rsa_keys_are_refused_in_each_role(plane, bits: int, device_role: str) -> None:
    """RSA keys below ``dtls_min_rsa_bits`` (2048 by default) fail the handshake whichever side is the DTLS
    server: the device sees its connection fail and an alert from relay, relay names the reason."""
    metrics, _ = plane
    cert = rsa_cert(bits, RSA_SUITES if device_role == "server" else OPENSSL_DEFAULT)
    alerts = record_alerts(cert)
    a = await attempt(plane, cert, device_role=device_role)
    try:
        await wait_for(lambda: a.relay.closed_reasons)
        assert a.relay.closed_reasons == ["dtls_failed"]
        await wait_for(lambda: a.device.connectionState == "failed")
        assert a.channel.readyState != "open"
        assert any(alert.startswith("received ") for alert in alerts), alerts  # relay told the device
        assert metrics.dtls_failures == {"weak_device_key": 1}
        assert handshake.refused_key_of(a.relay_dtls) == f"RSA {bits} bits (minimum 2048)"
    finally:
        await a.close()


def record_alerts(cert: DeviceCertificate) -> list[str]:
    """The TLS alerts the device's DTLS connection sends and receives, as the device logs them."""
    alerts: list[str] = []
    create = cert._create_ssl_context

    def info(conn, where: int, ret: int) -> None:
        if where & SSL.SSL_CB_ALERT:
            alerts.append(("sent " if where & SSL.SSL_CB_WRITE else "received ")
                          + handshake.ALERTS.get(ret & 0xFF, str(ret & 0xFF)))

    def create_with_info(srtp_profiles):
        ctx = create(srtp_profiles)
        ctx.set_info_callback(info)
        return ctx

    cert._create_ssl_context = create_with_info
    return alerts


def test_the_device_key_allowlist() -> None:
    """RSA of at least the minimum with an odd exponent >= 3, ECDSA on P-256/P-384/P-521; nothing else."""
    def public(key):
        return key.public_key()

    assert dtls.device_key_refusal(public(rsa.generate_private_key(65537, 2048))) is None
    assert dtls.device_key_refusal(public(rsa.generate_private_key(65537, 1024))) == "RSA 1024 bits (minimum 2048)"
    assert dtls.device_key_refusal(public(rsa.generate_private_key(65537, 1024)), 1024) is None
    assert dtls.device_key_refusal(public(rsa.generate_private_key(3, 2048))) is None
    even = rsa.RSAPublicNumbers(4, public(rsa.generate_private_key(65537, 2048)).public_numbers().n)
    with pytest.raises(ValueError):  # cryptography refuses it already; the allowlist would too
        even.public_key()
    for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()):
        assert dtls.device_key_refusal(public(ec.generate_private_key(curve))) is None
    for curve in (ec.SECP256K1(), ec.SECP224R1(), ec.BrainpoolP256R1()):
        why = dtls.device_key_refusal(public(ec.generate_private_key(curve)))
        assert why == f"EC curve {curve.name} (allowed: P-256, P-384, P-521)"
    assert dtls.device_key_refusal(public(ed25519.Ed25519PrivateKey.generate())) == \
        "Ed25519PublicKey keys (allowed: RSA, ECDSA)"
    assert dtls.device_key_refusal(public(dsa.generate_private_key(2048))) == "DSAPublicKey keys (allowed: RSA, ECDSA)"


def test_the_minimum_rsa_size_has_a_floor() -> None:
    with pytest.raises(ValueError, match="1024..16384"):
        dtls.WorkerCertificates(3600, min_rsa_bits=512)


async def test_rsa_only_client_cannot_reach_relay_as_server_and_the_failure_is_named(plane) -> None:
    """The one combination that cannot work, and why relay answers ``active`` whenever it may: a device
    that is the DTLS client and offers RSA suites only meets relay's ECDSA certificate. The call ends
    as ``dtls_failed``, counted by the alert relay sent."""
    metrics, _ = plane
    a = await attempt(plane, rsa_cert(2048, RSA_SUITES), device_role="client")
    try:
        await wait_for(lambda: a.relay.closed_reasons)
        assert a.relay.closed_reasons == ["dtls_failed"]
        assert a.device.connectionState == "failed" and a.channel.readyState != "open"
        assert metrics.dtls_failures == {"sent handshake_failure": 1}
    finally:
        await a.close()


def test_relay_offers_both_families() -> None:
    ctx = dtls.generate()._create_ssl_context(__import__("aiortc.rtcdtlstransport").rtcdtlstransport.SRTP_PROFILES)
    conn = SSL.Connection(ctx)
    names = conn.get_cipher_list()
    assert any(n.startswith("ECDHE-RSA-") for n in names) and any(n.startswith("ECDHE-ECDSA-") for n in names)
    assert not any("-SHA" in n and "ECDHE" not in n for n in names)  # forward secrecy only


async def test_a_lost_first_flight_is_resent_before_openssls_timer(plane) -> None:
    """The device loses relay's first ClientHello (as werift does while its DTLS server is not up yet).
    relay sends the very same datagram again (``relay.media.handshake.FirstFlight``) instead of waiting
    for OpenSSL's 1 s retransmit, whose record would carry a new sequence number: the ClientHello the
    device finally reads is byte-identical to the lost one."""
    metrics, clock = plane
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    device.addTrack(Tone(440))
    channel = device.createDataChannel("oai-events")
    await device.setLocalDescription(await device.createOffer())
    ice = device.getTransceivers()[0].receiver.transport.transport
    original_recv = ice._recv
    seen: list[bytes] = []

    async def lossy_recv() -> bytes:
        while True:
            data = await original_recv()
            if 19 < data[0] < 64 and not seen:
                seen.append(data)  # the first DTLS datagram is lost
                continue
            if 19 < data[0] < 64:
                seen.append(data)
            return data

    ice._recv = lossy_recv
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    answer = await relay.peer.answer(device.localDescription.sdp)
    await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    try:
        await wait_for(lambda: channel.readyState == "open")
        assert seen[0][0] == 22 and seen[1] == seen[0]  # handshake record; the resend is the same datagram
        flight = relay.peer._first_flight
        assert flight is not None and flight.flight == seen[0] and flight.resends >= 1
    finally:
        await device.close()
        await relay.peer.close()
    assert metrics.dtls_first_flight_resends >= 1
