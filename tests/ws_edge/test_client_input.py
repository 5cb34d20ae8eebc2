"""Smaller promises of the WebSocket edge: binary frames are refused with an error event (the call goes
on), the client's ``?model=`` is honoured only where the assistant's policy allows it, and the edge's
own error events are valid in both dialects (judged by the openai SDK's models)."""

from __future__ import annotations

import asyncio

from conformance.judge import violation


async def test_binary_frames_are_refused_and_the_call_goes_on(edge) -> None:
    conn = await edge.connect(await edge.token())
    await conn.until("session.updated")
    await conn.ws.send_bytes(b'{"type": "response.create"}')
    err = (await conn.until("error"))[-1]
    assert err["error"]["code"] == "invalid_event" and "text frame" in err["error"]["message"]
    assert violation(err, "beta") is None
    await conn.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "still there?"}]}})
    await conn.send({"type": "response.create"})
    done = (await conn.until("response.done"))[-1]
    assert done["response"]["status"] == "completed"


async def test_model_in_the_url_is_ignored_unless_the_policy_allows_it(edge) -> None:
    fixed = await edge.assistant(name="Fixed", model="relay-echo")
    conn = await edge.connect(await edge.token(assistant_id=fixed["id"]), model="relay-talk")
    created = (await conn.until("session.created"))[-1]
    assert created["session"]["model"] == "relay-echo"  # the model in use, not the one asked for
    assert created["session"]["type"] == "realtime"  # ?model= still tells a GA client apart

    free = await edge.assistant(name="Free", model="relay-echo",
                                device_update_allow=["model", "modalities", "turn_detection"])
    token = await edge.token(assistant_id=free["id"])
    conn = await edge.connect(token, model="relay-talk")
    created = (await conn.until("session.created"))[-1]
    assert created["session"]["model"] == "relay-talk"
    status, body, _ = await edge.handshake_error(token, model="bad model!")
    assert status == 400 and body["error"]["code"] == "invalid_model"


async def test_edge_errors_are_valid_in_both_dialects(edge_factory) -> None:
    edge = await edge_factory(ws_events_per_s=5)
    token = await edge.token()
    for dialect in ("beta", "ga"):
        conn = await edge.connect(token, dialect=dialect)
        await conn.until("session.updated")
        await conn.ws.send_bytes(b"{}")
        for _ in range(20):  # a flood: one rate_limit_exceeded error
            await conn.send({"type": "input_audio_buffer.clear"})
        errors = []
        async with asyncio.timeout(10):
            while {e["error"]["code"] for e in errors} != {"invalid_event", "rate_limit_exceeded"}:
                errors += [e for e in [await conn.recv()] if e["type"] == "error"]
        assert [violation(e, dialect) for e in errors] == [None] * len(errors)
        await conn.ws.close()
