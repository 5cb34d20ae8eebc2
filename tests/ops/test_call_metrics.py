"""Counters move with one real call: an aiortc device (relay.client) -> POST /v1/realtime -> relay ->
the built-in local assistant (echo) -> back; the live-call gauge returns to 0 after hang-up."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import socket

import aiohttp

from relay.client import RelayClient, encode_pcm16_to_opus
from relay.store import clients
from relay.web import keys
from tests.conftest import free_port
from tests.e2e.audio import RATE_HZ, bursts
from tests.ops.promtext import parse

SCRAPE = "scrape-" + secrets.token_hex(20)
LOOPBACK = ["127.0.0.1"]


async def scrape(base_url: str) -> tuple[str, dict]:
    async with aiohttp.ClientSession() as http, \
            http.get(base_url + "/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}) as resp:
        assert resp.status == 200
        text = await resp.text()
    return text, parse(text)


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)


def hist_count(fams: dict, name: str) -> float:
    fam = fams[name]
    return [v for n, _l, v in fam.samples if n == name + "_count"][0]


async def test_a_real_call_moves_the_counters_and_the_gauge_returns_to_zero(relay_factory) -> None:
    relay = await relay_factory(metrics_token=SCRAPE, demo_mode=False)
    client = await clients.create(relay.app[keys.DB], "default")
    secret = secrets.token_hex(24)
    _text, before = await scrape(relay.base_url)
    assert before["relay_live_calls"].value() == 0 and before["relay_calls_started_total"].value() == 0

    # two setup failures first: wrong content type, then a wrong secret after enrolment
    async with aiohttp.ClientSession() as http:
        hdrs = {"X-Client-Id": client.id, "X-Client-Secret": secret}
        async with http.post(relay.base_url + "/v1/realtime", data=b"v=0", headers={**hdrs, "Content-Type": "text/plain"}) as r:
            assert r.status == 415

    events: list[dict] = []
    device = RelayClient(relay.base_url, client.id, secret, host_addresses=LOOPBACK)
    signal = bursts([(0.3, 0.6, 440.0)], total_s=1.6)
    await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_event=events.append)
    await wait_until(lambda: "output_audio_buffer.stopped" in [e["type"] for e in events], 20)
    device.send_text("hello")
    await wait_until(lambda: relay.plane.metrics.dc_events_in >= 2)

    text, live = await scrape(relay.base_url)
    assert live["relay_live_calls"].value() == 1
    assert live["relay_media_clock_listeners"].value() == 1
    # opus_adaptive (on by default): the worker's complexity is one of its ladder's levels, steps agree
    steps = live["relay_opus_complexity_steps_total"].by("direction")
    assert live["relay_opus_complexity"].value() == relay.plane.clock.opus_complexity in (4, 1, 0)
    assert (live["relay_opus_complexity"].value() == 4) == (steps.get("down", 0) == steps.get("up", 0))
    assert 0 <= live["relay_media_clock_load"].value() < 10
    assert live["relay_calls_started_total"].value() == 1
    assert live["relay_rtp_in_packets_total"].value() > 20
    assert live["relay_rtp_out_packets_total"].value() > 20
    assert live["relay_downlink_frames_total"].value() > 20
    assert live["relay_media_clock_ticks_total"].value() > 20
    assert live["relay_datachannel_events_in_total"].value() >= 2
    assert live["relay_datachannel_events_out_total"].value() >= 5  # session.created, speech events, ...
    assert hist_count(live, "relay_uplink_latency_seconds") > 5
    assert hist_count(live, "relay_downlink_latency_seconds") >= 1
    assert hist_count(live, "relay_call_setup_seconds") == 1  # the answered set-up; the 415 is a failure
    assert live["relay_call_setup_failures_total"].value(code="unsupported_media_type") == 1
    assert live["relay_http_requests_total"].value(method="POST", route="/v1/realtime", status="201") == 1

    await device.hangup()
    await relay.wait_idle()
    text2, after = await scrape(relay.base_url)
    assert after["relay_live_calls"].value() == 0
    assert after["relay_media_clock_listeners"].value() == 0
    ended = after["relay_calls_ended_total"].by("reason")
    assert sum(ended.values()) == 1 and set(ended) <= {"datachannel_closed", "device_closed"}, ended
    # one source of truth: the histograms are MediaMetrics' samples (GET /v1/realtime/stats reads them too)
    media = relay.plane.metrics
    assert hist_count(after, "relay_uplink_latency_seconds") == media.uplink_latency.count
    assert hist_count(after, "relay_downlink_latency_seconds") == media.downlink_latency.count

    # wrong secret for the enrolled client: an auth failure and a setup failure, by code
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.base_url + "/v1/realtime", data=b"v=0\r\n", headers={
                "X-Client-Id": client.id, "X-Client-Secret": secrets.token_hex(24),
                "Content-Type": "application/sdp"}) as r:
            assert r.status == 401
    text3, fams = await scrape(relay.base_url)
    assert fams["relay_call_setup_failures_total"].value(code="invalid_secret") == 1
    assert fams["relay_auth_failures_total"].value(code="invalid_secret") == 1
    for scraped in (text, text2, text3):
        for forbidden in (secret, SCRAPE, client.id):
            assert forbidden not in scraped


async def test_upstream_connect_failure_is_counted(relay_factory) -> None:
    dead = f"ws://127.0.0.1:{free_port()}/v1/realtime"  # nothing listens there
    relay = await relay_factory(metrics_token=SCRAPE, upstream_url=dead, upstream_provider="compatible",
                                upstream_api_key="sk-" + secrets.token_hex(16))
    device = RelayClient(relay.base_url, "ops-demo", demo=True, host_addresses=LOOPBACK)
    try:
        await device.connect(audio_source=encode_pcm16_to_opus(bursts([], total_s=0.5), RATE_HZ))
        await relay.wait_idle()
    finally:
        await device.hangup()
    text, fams = await scrape(relay.base_url)
    assert fams["relay_upstream_connect_failures_total"].value() == 1
    assert fams["relay_calls_ended_total"].value(reason="upstream_unavailable") == 1
    assert fams["relay_live_calls"].value() == 0
    assert relay.app[keys.SETTINGS].upstream_api_key not in text


def _sockets_bound_to(port: int) -> list[socket.socket]:
    """This process's UDP sockets bound to ``port`` (relay's ICE port, read off its SDP answer), as duplicates
    of their descriptors: a shutdown through one reaches the socket relay sends from."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        if sock.type == socket.SOCK_DGRAM and sock.getsockname()[1] == port:
            found.append(sock)
        else:
            sock.close()
    return found


async def test_media_send_failures_show_in_metrics(relay_factory) -> None:
    """A real call's downlink leaves through the ICE port's media send queue: /metrics counts its datagrams
    and batches while the device's own receiver counts the packets arriving. Then the port's socket is shut
    for writing (as a kernel refusing every datagram would): each lost SRTP datagram shows in
    ``relay_ice_port_media_send_errors_total`` and nothing more reaches the device."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from tests.media.test_peer import Tone
    from tests.ops.test_handshake_failures import post_offer

    relay = await relay_factory(metrics_token=SCRAPE, ice_mux=True)
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    device.addTrack(Tone(440))
    device.createDataChannel("oai-events")
    await device.setLocalDescription(await device.createOffer())
    shut: list[socket.socket] = []

    async def device_received() -> int:
        stats = await device.getStats()
        return sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")

    try:
        answer = await post_offer(relay.base_url, device.localDescription.sdp)
        port = int(re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer).group(1))
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        async with asyncio.timeout(15):
            while await device_received() < 25:  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.05)
        _, fams = await scrape(relay.base_url)
        sent = fams["relay_ice_port_media_datagrams_sent_total"].value()
        assert sent >= 25 and fams["relay_ice_port_media_send_errors_total"].value() == 0
        assert 0 < fams["relay_ice_port_media_send_batches_total"].value() <= sent

        shut = _sockets_bound_to(port)
        assert shut, f"no UDP socket on relay's ICE port {port}"
        try:
            shut[0].shutdown(socket.SHUT_WR)
        except OSError as exc:  # an unconnected UDP socket: Linux says ENOTCONN but marks it shut all the same
            assert exc.errno == errno.ENOTCONN
        async with asyncio.timeout(15):
            while True:
                _, fams = await scrape(relay.base_url)
                if fams["relay_ice_port_media_send_errors_total"].value() >= 10:
                    break
                await asyncio.sleep(0.1)
        received = await device_received()
        await asyncio.sleep(0.3)
        assert await device_received() == received  # the lost datagrams really did not leave
        _, after = await scrape(relay.base_url)
        assert after["relay_ice_port_media_send_errors_total"].value() > fams["relay_ice_port_media_send_errors_total"].value()
        # a lost datagram is not also counted as sent
        assert after["relay_ice_port_media_datagrams_sent_total"].value() == fams["relay_ice_port_media_datagrams_sent_total"].value()
    finally:
        for sock in shut:
            sock.close()
        await device.close()
