"""The reference relay takes a real call: aiortc device peer -> reference -> relay's local assistant (loopback)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiohttp import web

from bench.markers import MarkerDetector, MarkerMatcher, marker_tone
from bench.reference import create_app
from relay.client import OpusPacketTrack, RelayClient, RelayError, encode_pcm16_to_opus

pytestmark = pytest.mark.slow


@pytest.fixture
async def reference_url():
    runner = web.AppRunner(create_app("local", model="relay-loopback"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_reference_echoes_markers_and_events(reference_url):
    rate = 48000
    signal = np.zeros(rate * 3, np.int16)
    tone = marker_tone(rate)
    marker_frames = {25, 75, 125}
    for f in marker_frames:
        signal[f * 960 : f * 960 + len(tone)] = tone
    matcher = MarkerMatcher(timeout_s=1.0)
    detector = MarkerDetector(rate)
    track = OpusPacketTrack(
        encode_pcm16_to_opus(signal, rate), on_sent=lambda i, t: matcher.on_sent(t) if i in marker_frames else None
    )

    def on_audio(pcm, rate_hz, arrival_s):
        if detector.feed(pcm, arrival_s) is not None:
            matcher.on_detected(arrival_s)

    events: list[str] = []
    async with RelayClient(reference_url, "ref-dev-1", "s" * 32, host_addresses=["127.0.0.1"]) as client:
        session = await client.create_session()
        assert session["id"].startswith("session_") and session["iceServers"] == []
        await client.connect(audio_source=track, on_audio=on_audio, on_event=lambda e: events.append(e["type"]))
        await asyncio.sleep(3.6)
        stats = client.receiver.stats
        assert stats.packets > 100 and stats.lost == 0
    assert len(matcher.rtts_ms) == 3, (matcher.rtts_ms, matcher.spurious)
    assert all(0 < x < 1000 for x in matcher.rtts_ms)
    assert matcher.lost(1e9) == 0
    assert events, "no data-channel events forwarded from the upstream"


async def test_reference_rejects_bad_requests(reference_url):
    client = RelayClient(reference_url, "ref-dev-2", host_addresses=["127.0.0.1"])
    try:
        with pytest.raises(RelayError) as info:
            await client._post("/v1/realtime", b"not sdp", "text/plain")
        assert info.value.status == 415 and info.value.type == "invalid_request_error"
        with pytest.raises(RelayError) as info:
            await client._post("/v1/realtime", b"v=0\r\n", "application/sdp")
        assert info.value.status == 400 and info.value.code == "invalid_sdp"
    finally:
        await client.hangup()
