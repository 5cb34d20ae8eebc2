"""Device handshake failures are told apart: a DTLS failure ends the call as ``dtls_failed`` with the
TLS alert logged and counted; an SCTP association that dies before any channel opened ends it as
``sctp_failed``. Seen from outside: the call's end reason and GET /metrics."""

from __future__ import annotations

import asyncio
import logging
import uuid

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport

from relay.media import handshake
from relay.media.plane import check_settings
from relay.settings import Settings, SettingsError
from tests.media.test_dtls_roles import RSA_SUITES, record_alerts, rsa_cert
from tests.media.test_peer import Tone
from tests.ops.test_call_metrics import SCRAPE, scrape


async def post_offer(base_url: str, sdp: str) -> str:
    headers = {"Content-Type": "application/sdp", "X-Client-Id": str(uuid.uuid4()),
               "X-Client-Secret": uuid.uuid4().hex + uuid.uuid4().hex, "X-Demo-Mode": "true"}
    async with aiohttp.ClientSession() as http, http.post(base_url + "/v1/realtime", data=sdp,
                                                          headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.text()


async def call_ended(relay) -> str:
    """The end reason of the relay's one call (counted when the call is torn down)."""
    ended = relay.plane.metrics.calls_ended_by_reason
    async with asyncio.timeout(15):
        while not ended:  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.02)
    assert len(ended) == 1, ended
    return next(iter(ended))


async def test_dtls_failure_is_logged_counted_and_exposed(relay_factory, caplog) -> None:
    """A device that is the DTLS client and offers RSA suites only cannot meet relay's ECDSA certificate."""
    relay = await relay_factory(metrics_token=SCRAPE)
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    device._RTCPeerConnection__certificates = [rsa_cert(2048, RSA_SUITES)]
    device.addTrack(Tone(440))
    device.createDataChannel("oai-events")
    await device.setLocalDescription(await device.createOffer())
    try:
        with caplog.at_level(logging.WARNING, logger="relay.media"):
            answer = await post_offer(relay.base_url, device.localDescription.sdp.replace(
                "a=setup:actpass", "a=setup:active"))
            await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            assert await call_ended(relay) == "dtls_failed"
        assert any("DTLS handshake with the device failed: sent handshake_failure" in r.getMessage()
                   for r in caplog.records)
        await relay.wait_idle()
        _, families = await scrape(relay.base_url)
        assert families["relay_calls_ended_total"].by("reason") == {"dtls_failed": 1}
        assert families["relay_dtls_failures_total"].by("reason") == {"sent handshake_failure": 1}
    finally:
        await device.close()


async def test_a_512_bit_rsa_device_key_is_refused_named_and_counted(relay_factory, caplog) -> None:
    """A device whose DTLS certificate has a 512-bit RSA key (old libpeer builds) posts its offer through the
    HTTP API: the offer is answered (the key is not in the SDP, only its fingerprint), then the DTLS
    handshake fails. The device's own DTLS stack receives relay's alert; relay logs which key it refused and
    counts the failure as ``weak_device_key`` in GET /metrics."""
    relay = await relay_factory(metrics_token=SCRAPE)
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    cert = rsa_cert(512, RSA_SUITES)
    alerts = record_alerts(cert)
    device._RTCPeerConnection__certificates = [cert]
    device.addTrack(Tone(440))
    channel = device.createDataChannel("oai-events")
    await device.setLocalDescription(await device.createOffer())
    try:
        with caplog.at_level(logging.WARNING, logger="relay.media"):
            answer = await post_offer(relay.base_url, device.localDescription.sdp)
            await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            assert await call_ended(relay) == "dtls_failed"
        assert any("DTLS handshake with the device failed: weak_device_key (RSA 512 bits (minimum 2048))"
                   in r.getMessage() for r in caplog.records)
        async with asyncio.timeout(15):
            while device.connectionState != "failed":  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.02)
        assert channel.readyState != "open"
        assert any(a.startswith("received ") for a in alerts), alerts
        await relay.wait_idle()
        _, families = await scrape(relay.base_url)
        assert families["relay_calls_ended_total"].by("reason") == {"dtls_failed": 1}
        assert families["relay_dtls_failures_total"].by("reason") == {"weak_device_key": 1}
    finally:
        await device.close()


def test_the_minimum_rsa_key_size_setting_is_checked_at_start() -> None:
    check_settings(Settings(dtls_min_rsa_bits=1024))
    with pytest.raises(SettingsError, match="dtls_min_rsa_bits: need 1024..16384"):
        check_settings(Settings(dtls_min_rsa_bits=512))


async def test_sctp_abort_before_any_channel_is_sctp_failed(relay_factory) -> None:
    """ICE and DTLS are up, then the device aborts the SCTP association before opening a channel."""
    relay = await relay_factory(metrics_token=SCRAPE)
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    device.addTrack(Tone(440))
    device.createDataChannel("esp", negotiated=True, id=1000)  # SCTP in the offer, no DCEP open
    await device.setLocalDescription(await device.createOffer())
    try:
        answer = await post_offer(relay.base_url, device.localDescription.sdp)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(15):
            while device.sctp.transport.state != "connected" or device.sctp.state != "connected":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await device.sctp._abort()
        assert await call_ended(relay) == "sctp_failed"
        await relay.wait_idle()
        _, families = await scrape(relay.base_url)
        assert families["relay_calls_ended_total"].by("reason") == {"sctp_failed": 1}
    finally:
        await device.close()


async def test_ice_up_but_no_dtls_is_dtls_timeout(relay_factory) -> None:
    """A device that answers ICE but whose DTLS never gets anything from relay (every DTLS datagram lost)."""
    relay = await relay_factory(ice_connect_timeout_s=2.0)
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    device.addTrack(Tone(440))
    device.createDataChannel("oai-events")
    await device.setLocalDescription(await device.createOffer())
    ice = device.getTransceivers()[0].receiver.transport.transport
    original_recv = ice._recv

    async def drop_dtls() -> bytes:
        while True:
            data = await original_recv()
            if not 19 < data[0] < 64:
                return data

    ice._recv = drop_dtls
    try:
        answer = await post_offer(relay.base_url, device.localDescription.sdp)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        assert await call_ended(relay) == "dtls_timeout"
    finally:
        await device.close()


class _Transport:
    def __init__(self, state: str, ice_state: str) -> None:
        self.state = state
        self.transport = type("Ice", (), {"state": ice_state})()


def test_classify_failure_ice_first() -> None:
    assert handshake.classify_failure(_Transport("failed", "failed")) == ("ice_failed", None)  # type: ignore[arg-type]
    assert handshake.classify_failure(None) == ("ice_failed", None)
    dtls = _Transport("failed", "completed")
    assert handshake.classify_failure(dtls)[0] == "dtls_failed"  # type: ignore[arg-type]
    assert handshake.dtls_detail(dtls) == "not_started"  # type: ignore[arg-type]
    assert isinstance(RTCDtlsTransport, type)
