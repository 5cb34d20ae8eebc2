"""The local assistant's session answers arbitrary client events with events, never an exception."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.assistant.session import CLIENT_EVENTS, LocalSession

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)
fields = st.sampled_from(["session", "item", "audio", "item_id", "audio_end_ms", "response", "event_id",
                          "content_index"])
events = st.builds(lambda t, extra: {**extra, "type": t}, st.sampled_from(sorted(CLIENT_EVENTS) + ["bogus"]),
                   st.dictionaries(fields, json_values, max_size=4))


async def _drive(evs: list[dict], dialect: str) -> list[dict]:
    sent: list[dict] = []

    async def send(ev: dict) -> None:
        sent.append(ev)

    async def close(code: int, reason: str) -> None:
        return None

    s = LocalSession(model="relay-echo", dialect=dialect, send=send, close=close, speedup=1000)
    await s.start()
    for ev in evs:
        await s.receive(orjson.dumps(ev))
    await s.receive(b"\x00not json")
    await s.shutdown()
    return sent


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, max_size=10), st.sampled_from(["beta", "ga"]))
def test_arbitrary_client_events(evs: list[dict], dialect: str) -> None:
    sent = asyncio.run(_drive(evs, dialect))
    assert sent[0]["type"] == "session.created"
    assert sent[-1]["type"] == "error" and sent[-1]["error"]["code"] == "invalid_json"
    for ev in sent:
        if ev["type"] == "error":
            assert set(ev["error"]) >= {"type", "code", "message"}
