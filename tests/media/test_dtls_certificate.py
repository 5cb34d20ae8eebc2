"""relay.media.dtls: one DTLS certificate per worker, shared by its calls, rotated without harm.

Real aiortc devices on 127.0.0.1 connect to relay's peers (ICE + DTLS, whose handshake checks
the certificate against the answer's fingerprint) and exchange data-channel messages.
"""

from __future__ import annotations

import re

import aiortc.rtcpeerconnection as rpc
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate
from OpenSSL import SSL

from relay.call.metrics import MediaMetrics
from relay.media import dtls
from relay.media.clock import MediaClock
from relay.media.compat import dtls as compat_dtls

from .test_peer import Loopback, connect_device, wait_for

FINGERPRINT = re.compile(r"^a=fingerprint:sha-256 (\S+)\r?$", re.M)


def fingerprints(sdp: str) -> set[str]:
    return set(FINGERPRINT.findall(sdp))


class Call:
    def __init__(self, device, channel, relay: Loopback, answer: str) -> None:
        self.device, self.channel, self.relay, self.answer = device, channel, relay, answer
        self.got: list[str] = []
        channel.on("message", self.got.append)

    async def ping(self) -> None:
        """A message through the call's DTLS/SCTP association and relay's ack back."""
        n = len(self.got)
        self.channel.send('{"type":"ping"}')
        await wait_for(lambda: len(self.got) > n)
        assert self.got[-1] == '{"type":"ack"}'

    async def close(self) -> None:
        await self.device.close()
        self.device._reader.cancel()
        await self.relay.peer.close()


async def start_call(metrics: MediaMetrics, clock: MediaClock) -> Call:
    device, channel, _ = await connect_device(label="oai-events")
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    answer = await relay.peer.answer(device.localDescription.sdp)
    await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await wait_for(lambda: relay.peer.connected and channel.readyState == "open")
    assert device.connectionState == "connected"
    return Call(device, channel, relay, answer)


@pytest.fixture
async def plane():
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    certs = dtls.configure(3600)
    yield metrics, clock, certs
    await clock.stop()


async def test_calls_share_the_worker_certificate_and_connect(plane) -> None:
    metrics, clock, certs = plane
    a = await start_call(metrics, clock)
    b = await start_call(metrics, clock)
    try:
        shared = certs.current()
        assert fingerprints(a.answer) == fingerprints(b.answer) == {shared.sha256}
        assert a.answer.count("a=fingerprint:") == a.answer.count("m=")  # one line per m-section: sha-256
        # the device's offer carries its own, different certificate
        assert fingerprints(a.device.localDescription.sdp) != {shared.sha256}
        for call in (a, b):
            dtls_transport = call.relay.peer.pc.getTransceivers()[0].receiver.transport
            assert dtls_transport.state == "connected"
            assert dtls_transport._RTCDtlsTransport__local_certificate is shared
            await call.ping()
        assert certs.rotations == 0
    finally:
        await a.close()
        await b.close()


async def test_rotation_new_calls_get_the_new_certificate_old_calls_continue(plane) -> None:
    metrics, clock, certs = plane
    old = await start_call(metrics, clock)
    try:
        first = certs.current().sha256
        rotated = certs.rotate()
        assert rotated.sha256 != first and certs.rotations == 1
        new = await start_call(metrics, clock)
        try:
            assert fingerprints(old.answer) == {first}
            assert fingerprints(new.answer) == {rotated.sha256}
            await old.ping()  # the old call's DTLS association is untouched by the rotation
            await new.ping()
            assert old.relay.peer.connected and old.device.connectionState == "connected"
        finally:
            await new.close()
    finally:
        await old.close()


async def test_rotation_is_due_after_rotate_s() -> None:
    certs = dtls.WorkerCertificates(60)
    first = certs.current()
    assert certs.current() is first
    first.created_s -= 61
    second = certs.current()
    assert second is not first and certs.rotations == 1 and certs.current() is second
    with pytest.raises(ValueError):
        dtls.WorkerCertificates(0)
    with pytest.raises(ValueError):
        dtls.WorkerCertificates(dtls.MAX_ROTATE_S + 1)


def test_cached_context_and_fingerprints() -> None:
    cert = dtls.generate()
    ctx = cert._create_ssl_context(SRTP_PROFILES)
    assert cert._create_ssl_context(SRTP_PROFILES) is ctx
    assert ctx.get_session_cache_mode() == SSL.SESS_CACHE_OFF  # no DTLS resumption across calls
    fresh = RTCCertificate(key=cert._key, cert=cert._cert)
    # the same SHA-256 value aiortc computes, and only that one (libdatachannel interop, media/dtls.py)
    assert cert.getFingerprints() == [f for f in fresh.getFingerprints() if f.algorithm == "sha-256"]
    assert cert.getFingerprints() is not cert.getFingerprints()  # callers get their own list


async def test_other_peer_connections_keep_aiortc_behaviour() -> None:
    shared = dtls.current()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # e.g. a test device: its own new certificate
    try:
        certs = pc._RTCPeerConnection__certificates
        assert certs[0] is not shared and not isinstance(certs[0], dtls.WorkerCertificate)
    finally:
        await pc.close()


def test_relay_leaves_aiortcs_module_and_class_alone() -> None:
    """The worker's certificate is handed to relay's connections only (relay.media.compat.dtls): aiortc's
    module still names its own RTCCertificate, its class keeps its own __init__."""
    pc = dtls.peer_connection(RTCConfiguration(iceServers=[]), dtls.current())
    assert rpc.RTCCertificate is RTCCertificate
    assert RTCPeerConnection.__init__.__globals__ is vars(rpc)
    assert type(pc) is RTCPeerConnection and pc._RTCPeerConnection__certificates == [dtls.current()]


def test_unsupported_aiortc_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the supported versions and the hooked names are relay.media.compat's check: tests/media/test_compat.py)
    original = RTCPeerConnection.__init__

    def builds_its_certificate_otherwise(self, configuration=None) -> None:  # no RTCCertificate lookup
        original(self, configuration)

    monkeypatch.setattr(RTCPeerConnection, "__init__", builds_its_certificate_otherwise)
    compat_dtls._relay_init.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="no longer looks up RTCCertificate"):
            dtls.peer_connection(RTCConfiguration(iceServers=[]), dtls.current())
    finally:
        compat_dtls._relay_init.cache_clear()


def test_a_connection_that_did_not_take_the_certificate_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    # an aiortc that still looks the name up but keeps another certificate
    monkeypatch.setattr(compat_dtls._Given, "generateCertificate", staticmethod(RTCCertificate.generateCertificate))
    with pytest.raises(RuntimeError, match="did not take relay's DTLS certificate"):
        dtls.peer_connection(RTCConfiguration(iceServers=[]), dtls.current())
