"""The client's dialect is chosen at the WebSocket handshake (docs/ws_edge.md): each case of the
rule, judged on the first event relay sends (``session.created``: nested GA or flat beta)."""

from __future__ import annotations

import pytest

from .conftest import types


def _dialect_of(created: dict) -> str:
    assert created["type"] == "session.created"
    return "ga" if created["session"].get("type") == "realtime" and "audio" in created["session"] else "beta"


@pytest.mark.parametrize(("headers", "query", "expected"), [
    ({}, {}, "beta"),                                                      # no signal: the contract's dialect
    ({"OpenAI-Beta": "realtime=v1"}, {}, "beta"),                          # the SDK's beta client
    ({"OpenAI-Beta": "realtime=v1"}, {"model": "gpt-realtime"}, "beta"),   # the header wins over ?model=
    ({"OpenAI-Beta": "assistants=v2, realtime=v1"}, {"dialect": "ga"}, "beta"),  # header lists are read
    ({}, {"model": "gpt-realtime"}, "ga"),                                 # the SDK's GA client
    ({}, {"dialect": "ga"}, "ga"),
    ({}, {"dialect": "beta", "model": "gpt-realtime"}, "beta"),            # explicit beats ?model=
    ({"OpenAI-Beta": "assistants=v2"}, {"model": "gpt-realtime"}, "ga"),   # another beta flag is no signal
])
async def test_handshake_chooses_the_dialect(edge, headers, query, expected) -> None:
    token = await edge.token()
    ws = await edge.http.ws_connect(edge.url("/v1/realtime"), params=query,
                                    headers={"Authorization": f"Bearer {token}", **headers})
    edge.conns.append(ws)
    created = await ws.receive_json(timeout=10)
    assert _dialect_of(created) == expected
    if expected == "ga":  # everything after it too, without the client ever sending a GA-shaped event
        await ws.send_json({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
        await ws.send_json({"type": "response.create"})
        seen = []
        while not seen or seen[-1] != "response.done":
            seen.append((await ws.receive_json(timeout=10))["type"])
        assert "response.output_audio.delta" in seen and "response.audio.delta" not in seen
        assert "conversation.item.added" in seen


async def test_unknown_dialect_is_refused_before_the_upgrade(edge) -> None:
    status, body, _ = await edge.handshake_error(await edge.token(), dialect="v2")
    assert status == 400
    assert body["error"]["code"] == "invalid_dialect"


async def test_a_ga_shaped_event_still_switches_a_beta_start(edge) -> None:
    conn = await edge.connect(await edge.token())
    events = await conn.until("session.updated")
    assert _dialect_of(events[0]) == "beta"
    await conn.send({"type": "session.update", "session": {"type": "realtime"}})
    updated = (await conn.until("session.updated"))[-1]
    assert updated["session"]["type"] == "realtime"
    assert "session.created" in types(events)


@pytest.mark.parametrize(("headers", "query", "expected"), [
    ({}, {}, "ga"),                                            # the token's dialect when the handshake is silent
    ({}, {"model": "gpt-realtime"}, "ga"),
    ({}, {"dialect": "beta"}, "beta"),                         # an explicit ?dialect= wins over the token's
    ({"OpenAI-Beta": "realtime=v1"}, {}, "beta"),              # and so does the beta header
])
async def test_the_tokens_configured_client_dialect(edge, headers, query, expected) -> None:
    status, doc = await edge.admin("POST", "/tokens", json={"workspace_id": "default", "client_dialect": "ga"})
    assert status == 201 and doc["client_dialect"] == "ga"
    ws = await edge.http.ws_connect(edge.url("/v1/realtime"), params=query,
                                    headers={"Authorization": f"Bearer {doc['token']}", **headers})
    edge.conns.append(ws)
    assert _dialect_of(await ws.receive_json(timeout=10)) == expected


async def test_a_tokens_client_dialect_is_checked(edge) -> None:
    status, doc = await edge.admin("POST", "/tokens", json={"workspace_id": "default", "client_dialect": "v2"})
    assert status == 400 and "client_dialect" in doc["error"]["message"]
    status, doc = await edge.admin("POST", "/tokens", json={"workspace_id": "default"})
    assert status == 201 and doc["client_dialect"] is None
