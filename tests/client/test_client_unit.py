"""Device SDK pieces that need no relay: error parsing, offer building, ICE restriction, RTP accounting."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiohttp import web

from relay.client import (
    AudioReceiver,
    OpusPacketTrack,
    PacketDecoder,
    PcmGeneratorTrack,
    RelayClient,
    RelayError,
    encode_pcm16_to_opus,
    ice_servers_from_session,
    parse_error,
)
from relay.client.client import _rtpmap


def test_parse_error_seed_shape():
    err = parse_error(
        400,
        b'{"error": {"message": "Missing X-Client-Id header", '
        b'"type": "invalid_request_error", "code": "missing_header"}}',
    )
    assert isinstance(err, RelayError)
    assert (err.status, err.code, err.type) == (400, "missing_header", "invalid_request_error")
    assert err.message == "Missing X-Client-Id header"
    assert err.error == {
        "message": "Missing X-Client-Id header",
        "type": "invalid_request_error",
        "code": "missing_header",
    }


def test_parse_error_non_json_body():
    err = parse_error(502, b"<html>bad gateway</html>")
    assert err.status == 502 and err.code == "http_502" and "bad gateway" in err.message


def test_ice_servers_from_session_skips_bad_entries():
    servers = ice_servers_from_session(
        [{"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "c"}, "junk", {"username": "no urls"}]
    )
    assert len(servers) == 1 and servers[0].username == "u" and servers[0].urls == ["turn:127.0.0.1:3478"]


async def test_offer_has_opus_datachannel_and_only_loopback_candidates():
    client = RelayClient("http://127.0.0.1:1", "dev-1", "s" * 32, host_addresses=["127.0.0.1"])
    pc = client.build_peer(audio_source=None, datachannel_label="oai-events")
    try:
        from relay.client.ice import host_addresses

        with host_addresses(client.host_addresses):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        assert "m=audio" in sdp and "m=application" in sdp
        assert set(_rtpmap(sdp).values()) == {"opus"}
        candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
        assert candidates, sdp
        assert all(" 127.0.0.1 " in c for c in candidates), candidates
        assert client.channel.label == "oai-events"
    finally:
        await client.hangup()


async def test_offer_with_g711_and_late_datachannel_keeps_sctp():
    client = RelayClient("http://127.0.0.1:1", "dev-1", host_addresses=["127.0.0.1"])
    pc = client.build_peer(codecs=("pcma", "opus"), late_datachannel=True)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        assert client.channel is None
        assert "m=application" in sdp and "webrtc-datachannel" in sdp
        names = list(_rtpmap(sdp).values())
        assert names[0] == "PCMA" and "opus" in names
    finally:
        await client.hangup()


async def test_unsupported_codec_rejected():
    client = RelayClient("http://127.0.0.1:1", "dev-1")
    with pytest.raises(ValueError):
        client.build_peer(codecs=("speex",))
    await client.hangup()


def test_headers():
    c = RelayClient("http://x/", "id1", "sec", demo=True, assistant_id="asst_1")
    h = c.headers("application/sdp")
    assert h == {
        "Content-Type": "application/sdp",
        "X-Client-Id": "id1",
        "X-Client-Secret": "sec",
        "X-Demo-Mode": "true",
        "X-Assistant-Id": "asst_1",
    }
    assert "X-Demo-Mode" not in RelayClient("http://x", "id1", "sec").headers("application/json")


async def test_http_errors_raise_typed_exception():
    seen: list[dict[str, str]] = []

    async def sessions(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response(
            {"error": {"message": "Invalid client secret", "type": "authentication_error", "code": "invalid_secret"}},
            status=401,
        )

    async def realtime(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "bad sdp", "type": "invalid_request_error", "code": "invalid_sdp"}}, status=400
        )

    app = web.Application()
    app.router.add_post("/v1/realtime/sessions", sessions)
    app.router.add_post("/v1/realtime", realtime)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        client = RelayClient(f"http://127.0.0.1:{port}", "dev-1", "x" * 32, host_addresses=["127.0.0.1"])
        with pytest.raises(RelayError) as info:
            await client.create_session()
        assert info.value.status == 401 and info.value.code == "invalid_secret"
        assert seen[0]["X-Client-Id"] == "dev-1" and seen[0]["Content-Type"] == "application/json"
        with pytest.raises(RelayError) as info:
            await client.connect()
        assert info.value.code == "invalid_sdp"
        assert client.pc.connectionState == "closed"  # failed connect releases the peer
        await client.hangup()
    finally:
        await runner.cleanup()


def test_receiver_counts_gaps_wraparound_and_late_packets():
    r = AudioReceiver(decode=False)
    for seq in (65533, 65534, 0, 1, 4):  # 65535 missing, 2 and 3 missing
        r.handle_packet(seq, 111, b"x", 1.0)
    assert r.stats.packets == 5 and r.stats.lost == 3
    r.handle_packet(2, 111, b"x", 1.1)  # late: one fewer lost
    assert r.stats.lost == 2 and r.stats.duplicates_or_late == 1


async def test_receiver_decodes_to_callback_and_bounded_queue():
    t = np.arange(48000) / 48000
    tone = (np.sin(2 * np.pi * 1000 * t) * 12000).astype(np.int16)
    packets = encode_pcm16_to_opus(tone, 48000)
    assert len(packets) == 50
    got: list[int] = []

    r = AudioReceiver(on_audio=lambda pcm, rate, ts: got.append(len(pcm)), queue_frames=10)
    r.set_payload_types({111: "opus"})
    for i, p in enumerate(packets):
        r.handle_packet(i, 111, p, float(i))
    assert got == [960] * 50
    assert r.queue.qsize() == 10 and r.stats.queue_dropped == 40
    pcm, _ = r.queue.get_nowait()
    assert np.sqrt(np.mean(pcm.astype(float) ** 2)) > 3000  # the tone survives the round trip


def test_pcmu_decoder():
    d = PacketDecoder("pcmu")
    out = d.decode(bytes([0xFF]) * 160)  # mu-law 0xFF is silence
    assert len(out) == 160 and np.abs(out).max() < 10 and d.rate_hz == 8000


async def test_packet_track_paces_and_reports_indices():
    sent: list[tuple[int, float]] = []
    track = OpusPacketTrack([b"a", b"b", b"c"], on_sent=lambda i, ts: sent.append((i, ts)))
    packets = [await track.recv() for _ in range(5)]
    assert [i for i, _ in sent] == [0, 1, 2, -1, -1]
    assert [bytes(p) for p in packets[:3]] == [b"a", b"b", b"c"]
    assert [p.pts for p in packets] == [0, 960, 1920, 2880, 3840]
    # absolute schedule: the 5th packet is not sent before 4 ptimes after the first
    assert sent[4][1] - sent[0][1] >= 0.08 - 0.005
    track.stop()


async def test_pcm_generator_track_encodes_frames():
    chunks = [np.full(1600, 3000, np.int16).tobytes() for _ in range(3)]  # 16 kHz, 300 ms
    track = PcmGeneratorTrack(chunks, rate_hz=16000)
    track._start_s = -1e9  # do not pace in the test: far behind schedule -> resync, no sleeps
    packets = [bytes(await track.recv()) for _ in range(16)]
    assert all(len(p) > 0 for p in packets)
    track.stop()


class _FakeChannel:
    """Stands in for an open aiortc data channel: records what the client sends."""

    readyState = "open"
    label = "messages"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, data: str) -> None:
        self.sent.append(data)

    def on(self, *_a, **_k):
        return lambda f: f


async def _tool_round_trip(tools, name: str, arguments: str) -> list[dict]:
    import orjson

    client = RelayClient("http://127.0.0.1:1", "dev-1")
    client._tools = tools
    client.channel = _FakeChannel()
    client._handle_message(
        orjson.dumps(
            {
                "type": "response.output_item.done",
                "item": {
                    "type": "function_call",
                    "id": "call_1",
                    "call_id": "call_1",
                    "name": name,
                    "arguments": arguments,
                },
            }
        )
    )
    for _ in range(20):
        await asyncio.sleep(0)
    sent = [orjson.loads(m) for m in client.channel.sent]
    await client.hangup()
    return sent


async def test_tool_call_answered_exactly_like_seed_snippet():
    import orjson

    sent = await _tool_round_trip(
        {"set_device_volume": lambda a: {"volume_level": a["volume_level"]}},
        "set_device_volume",
        '{"volume_level": 40}',
    )
    assert sent[0] == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_1", "output": sent[0]["item"]["output"]},
    }
    assert orjson.loads(sent[0]["item"]["output"]) == {"success": True, "volume_level": 40}
    assert sent[1] == {"type": "response.create"}


async def test_failing_tool_still_answers_and_unknown_tool_is_ignored():
    import orjson

    def broken(_args):
        raise RuntimeError("no speaker")

    sent = await _tool_round_trip({"quiet_device": broken}, "quiet_device", "{}")
    out = orjson.loads(sent[0]["item"]["output"])
    assert out["success"] is False and "no speaker" in out["error"] and sent[1]["type"] == "response.create"
    assert await _tool_round_trip({"quiet_device": broken}, "get_weather", "{}") == []  # server-side tool


def test_receiver_tells_declared_gaps_from_missing_frames():
    r = AudioReceiver(decode=False)
    r.set_payload_types({111: "opus"})
    # 3 frames, then the sender skips 19 frames on purpose (DTX: timestamp jumps 400 ms, sequence does not)
    for seq, ts in ((1, 0), (2, 960), (3, 1920), (4, 1920 + 20 * 960), (5, 1920 + 21 * 960)):
        r.handle_packet(seq, 111, b"x", 0.0, ts)
    assert r.stats.lost == 0 and r.stats.declared_gap_frames == 19
    # a lost packet is a sequence gap, not a declared gap
    r.handle_packet(7, 111, b"x", 0.0, 1920 + 23 * 960)
    assert r.stats.lost == 1 and r.stats.declared_gap_frames == 19
