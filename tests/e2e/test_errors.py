"""Bad input to POST /v1/realtime and on the data channel: clear errors, never a crash,
never a half-open peer, never harm to the call."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from relay.client import encode_pcm16_to_opus
from tests.e2e.audio import RATE_HZ, Capture, bursts, dominant_hz
from tests.media.conftest import golden_offer


async def post(relay, body: bytes | str, content_type: str = "application/sdp", **headers: str):
    hdrs = {"X-Client-Id": "3f0c7a52-94e4-4a52-9a7e-0e4d2c7b9f10", "X-Client-Secret": "s" * 40,
            "X-Demo-Mode": "true", "Content-Type": content_type, **headers}
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.base_url + "/v1/realtime", data=body, headers=hdrs) as resp:
            return resp.status, resp.content_type, await resp.read()


def assert_error(status, ctype, body, expected_status, code=None):
    assert status == expected_status, body
    assert ctype == "application/json"
    doc = orjson.loads(body)
    assert set(doc["error"]) >= {"message", "type", "code"} and doc["error"]["message"]
    if code:
        assert doc["error"]["code"] == code
    return doc["error"]


async def test_wrong_content_type_is_415(relay):
    status, ctype, body = await post(relay, golden_offer("chrome"), "application/json")
    assert_error(status, ctype, body, 415, "unsupported_media_type")


@pytest.mark.parametrize("body, code", [
    (b"", "invalid_sdp"),
    (b"this is not sdp", "invalid_sdp"),
    (b"\xff\xfe\x00garbage", "invalid_sdp"),
    (b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no_audio"),
    (b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF\r\n", "invalid_sdp"),
])
async def test_malformed_offers_are_400(relay, body, code):
    assert_error(*await post(relay, body), 400, code)
    assert len(relay.plane.registry) == 0


MALFORMED = sorted((Path(__file__).parents[1] / "media" / "offers" / "malformed").glob("*.sdp"))


@pytest.mark.parametrize("path", MALFORMED, ids=[p.stem for p in MALFORMED])
async def test_malformed_offer_corpus_is_400_without_a_traceback(relay, path, caplog):
    """tests/media/offers/malformed: offers built from a real one with one defect each (issue 14: the
    BUNDLE and NUL-in-mid ones were 500s with two tracebacks each)."""
    with caplog.at_level(logging.WARNING):
        assert_error(*await post(relay, path.read_bytes()), 400, "invalid_sdp")
    assert len(relay.plane.registry) == 0
    assert [r for r in caplog.records if r.exc_info] == []


async def test_offer_without_usable_codec_is_400(relay):
    sdp = golden_offer("chrome").replace("SAVPF 111 63 9 0 8 13 110 126", "SAVPF 9 13")
    err = assert_error(*await post(relay, sdp), 400, "unsupported_codec")
    assert "G722" in err["message"]


async def test_oversized_offer_is_413(relay):
    big = golden_offer("chrome") + "a=x-padding:" + "x" * relay.plane.settings.max_sdp_bytes + "\n"
    assert_error(*await post(relay, big), 413, "request_too_large")


async def test_golden_offers_of_real_devices_get_answers(relay):
    for name, rtpmap in (("chrome", "opus/48000/2"), ("chromium156_captured", "opus/48000/2"),
                         ("firefox", "opus/48000/2"), ("safari", "opus/48000/2"),
                         ("esp32_opus", "opus/48000/2"), ("esp32_pcma", "PCMA/8000")):
        status, ctype, body = await post(relay, golden_offer(name), **{"X-Client-Id": str(uuid.uuid4())})
        assert status == 201 and ctype == "application/sdp", body
        answer = body.decode()
        assert answer.startswith("v=0") and "a=rtpmap:" in answer and rtpmap in answer
        assert "typ host" in answer and "127.0.0.1" in answer and "srflx" not in answer
    # these devices never connect (their candidates are fictitious): end them like a timeout would
    for call in relay.plane.registry.calls():
        call.end("test_cleanup")


async def test_call_limit_is_503_and_frees_up(relay_factory):
    relay = await relay_factory(max_calls=1)
    status, _, _ = await post(relay, golden_offer("chrome"))
    assert status == 201
    err = assert_error(*await post(relay, golden_offer("firefox")), 503, "capacity_exceeded")
    assert "limit" in err["message"]
    relay.plane.registry.calls()[0].end("test_cleanup")
    await relay.wait_idle()
    status, _, _ = await post(relay, golden_offer("safari"))
    assert status == 201
    relay.plane.registry.calls()[0].end("test_cleanup")
    await relay.wait_idle()


async def test_device_that_never_connects_is_dropped(relay_factory):
    relay = await relay_factory(ice_connect_timeout_s=0.5)
    status, _, _ = await post(relay, golden_offer("chrome"))
    assert status == 201
    call = relay.plane.registry.calls()[0]
    await asyncio.wait_for(call.wait_closed(), 10)
    assert call.end_reason == "ice_timeout" and len(relay.plane.registry) == 0


async def test_bad_events_get_error_events_and_the_call_goes_on(relay_factory):
    relay = await relay_factory(device_event_max_bytes=16 * 1024)
    signal = bursts([(2.0, 0.6, 500.0)], total_s=3.0)
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_audio=capture,
                         on_event=events.append)
    try:
        device.channel.send("{not json")
        device.channel.send('["a list"]')
        device.send_event({"type": "no.such.event"})
        # over the answer's a=max-message-size (16 KiB here): the device's aiortc would refuse to send it
        device.pc.sctp._remote_max_message_size = 0
        device.channel.send(orjson.dumps({"type": "conversation.item.create", "pad": "x" * 100_000}).decode())
        async with asyncio.timeout(15):
            while "output_audio_buffer.stopped" not in [e["type"] for e in events]:  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.05)
    finally:
        await device.hangup()
    errors = [e["error"] for e in events if e["type"] == "error"]
    codes = [e.get("code") for e in errors]
    assert "invalid_json" in codes and "invalid_event" in codes and "invalid_event_type" in codes
    assert "message_too_large" in codes
    assert len(errors) >= 4, errors
    # and the call still works: the utterance after the bad events is echoed
    segments = capture.segments()
    assert segments and abs(dominant_hz(capture.segment_samples(segments[0]), capture.rate_hz) - 500) < 10
    await relay.wait_idle()


async def test_stats_need_the_admin_token(relay_factory):
    relay = await relay_factory(admin_token="t" * 32)
    async with aiohttp.ClientSession() as http:
        async with http.get(relay.base_url + "/v1/realtime/stats") as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_admin_token"
        async with http.get(relay.base_url + "/v1/realtime/stats",
                            headers={"Authorization": "Bearer " + "t" * 32}) as resp:
            assert resp.status == 200
            stats = await resp.json()
    assert stats["live_calls"] == 0 and "uplink_latency" in stats and stats["calls_started"] == 0


async def test_event_flood_gets_one_error_and_the_call_survives(relay_factory):
    relay = await relay_factory(device_events_per_s=20)
    events = []
    device = relay.device()
    await device.connect(on_event=events.append)
    try:
        for _ in range(200):
            device.send_event({"type": "input_audio_buffer.clear"})
        async with asyncio.timeout(10):
            while not any(e["type"] == "error" and e["error"]["code"] == "rate_limit_exceeded" for e in events):  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # the bucket refills
        device.send_text("still here")
        async with asyncio.timeout(10):
            while not any(e["type"] == "response.done" for e in events):  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.05)
        assert relay.plane.metrics.dc_events_refused >= 100
        assert sum(e["type"] == "error" and e["error"]["code"] == "rate_limit_exceeded" for e in events) <= 2
    finally:
        await device.hangup()
    await relay.wait_idle()


async def test_assistant_with_an_unusable_dialect_fails_cleanly(relay_factory):
    """A bad stored configuration is the server's problem: a 500 in seed 000's shape, no peer left."""
    from relay.store import assistants, clients, workspaces
    from relay.web import keys

    relay = await relay_factory(demo_mode=False)
    db = relay.app[keys.DB]
    ws, _ = await workspaces.create(db, "broken")
    assistant = await assistants.create(db, ws.id, "broken", provider="local")
    client = await clients.create(db, ws.id, assistant_id=assistant.id)
    await db.execute("UPDATE assistants SET dialect = ? WHERE id = ?", "v3", assistant.id)
    import gc

    from aiortc import RTCPeerConnection

    status, ctype, body = await post(relay, golden_offer("chrome"), **{"X-Client-Id": client.id,
                                                                       "X-Demo-Mode": "false"})
    assert status == 500 and ctype == "application/json" and orjson.loads(body)["error"]["type"] == "server_error"
    assert len(relay.plane.registry) == 0
    gc.collect()
    live = [o for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"]
    assert live == []


async def test_openapi_documents_the_sdp_exchange(relay):
    async with aiohttp.ClientSession() as http:
        async with http.get(relay.base_url + "/openapi.json") as resp:
            doc = await resp.json()
    op = doc["paths"]["/v1/realtime"]["post"]
    assert "application/sdp" in op["requestBody"]["content"] and "application/sdp" in op["responses"]["201"]["content"]
    assert {"400", "401", "413", "415", "503"} <= set(op["responses"])
    assert {p["name"] for p in op["parameters"]} >= {"X-Client-Id", "X-Client-Secret", "X-Demo-Mode", "X-Assistant-Id"}
    assert "/v1/realtime/stats" in doc["paths"]



async def test_one_client_cannot_take_every_call(relay_factory):
    relay = await relay_factory(max_calls_per_client=1)
    me, other = str(uuid.uuid4()), str(uuid.uuid4())
    status, _, _ = await post(relay, golden_offer("chrome"), **{"X-Client-Id": me})
    assert status == 201
    err = assert_error(*await post(relay, golden_offer("chrome"), **{"X-Client-Id": me}), 429, "too_many_calls")
    assert "1 live calls" in err["message"]
    status, _, _ = await post(relay, golden_offer("chrome"), **{"X-Client-Id": other})
    assert status == 201
    for call in relay.plane.registry.calls():
        call.end("test_cleanup")
    await relay.wait_idle()
    status, _, _ = await post(relay, golden_offer("chrome"), **{"X-Client-Id": me})  # freed again
    assert status == 201
    relay.plane.registry.calls()[0].end("test_cleanup")
    await relay.wait_idle()
