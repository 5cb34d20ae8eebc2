"""The WebSocket edge judged by the official ``openai`` SDK: its GA client
(``client.realtime.connect``) and its beta client (``client.beta.realtime.connect``) talk to
relay with a relay API token; every event relay sends validates strictly against the SDK's models
of the client's dialect, with the built-in assistant speaking the same and the other dialect."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI
from ws_edge.conftest import Edge

from .conversation import AUDIO_DELTA, Script, audio_of, error_turn, silence, text_turn, tone, tool_turn
from .judge import Verdict


class SdkTransport:
    """An SDK realtime connection; a reader task judges every raw event it receives."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.verdict = Verdict(dialect)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.typed: list[Any] = []  # what the SDK's own parser made of each event
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            raw = await self.conn.recv_bytes()
            event = orjson.loads(raw)
            self.verdict.add(event)
            self.typed.append(self.conn.parse_event(raw))
            await self.queue.put(event)

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def next_event(self) -> dict[str, Any]:
        if self._reader.done() and self.queue.empty():
            raise ConnectionError(f"the SDK connection ended: {self._reader.exception()!r}")
        get = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({get, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            return get.result()
        get.cancel()
        raise ConnectionError(f"the SDK connection ended: {self._reader.exception()!r}")

    async def stop(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


def sdk_client(edge: Edge, token: str) -> AsyncOpenAI:
    base = str(edge.server.make_url("/v1"))
    return AsyncOpenAI(api_key=token, base_url=base, websocket_base_url=base.replace("http://", "ws://"),
                       max_retries=0)


def connect(client: AsyncOpenAI, dialect: str, **kwargs: Any) -> Any:
    if dialect == "ga":
        return client.realtime.connect(model="gpt-realtime", **kwargs)
    return client.beta.realtime.connect(model="gpt-4o-realtime-preview", **kwargs)


async def audio_turn(s: Script) -> None:
    speech = tone(900)
    await s.append(silence(200) + speech + silence(800))
    events = await s.until("response.done")
    assert speech in audio_of(events, s.dialect), "the client heard no (or other) audio in its dialect"
    other = AUDIO_DELTA["beta" if s.dialect == "ga" else "ga"]
    assert other not in [e["type"] for e in events]


async def barge_in_turn(s: Script) -> None:
    """The client talks over a long answer: the assistant cancels it (server VAD), answers the new turn."""
    await s.append(silence(100) + tone(3000, freq_hz=300) + silence(700))
    await s.until(AUDIO_DELTA[s.dialect])
    await s.append(tone(600, freq_hz=700) + silence(700))
    done = await s.until("response.done", lambda e: e["response"]["status"] == "cancelled")
    assert "input_audio_buffer.speech_started" in [e["type"] for e in done]
    await s.until("response.done", lambda e: e["response"]["status"] == "completed")


async def recycle_turn(s: Script, edge: Edge) -> None:
    """Waits until relay replaced the call's upstream (``upstream_recycle_s``), then talks on."""
    (call,) = edge.plane.registry.calls()
    first = call.upstream
    async with asyncio.timeout(20):
        while call.upstream is first:  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)
    await text_turn(s)


@pytest.mark.parametrize("upstream", ["beta", "ga"])
@pytest.mark.parametrize("dialect", ["ga", "beta"])
async def test_sdk_client_gets_only_valid_events(edge_factory, dialect: str, upstream: str) -> None:
    edge = await edge_factory(upstream_recycle_s=4)
    assistant = await edge.assistant(name="Conf", dialect=upstream)
    token = await edge.token(assistant_id=assistant["id"])
    async with connect(sdk_client(edge, token), dialect) as conn:
        t = SdkTransport(conn, dialect)
        try:
            s = Script(t)
            created = (await s.until("session.created"))[-1]
            await s.until("session.updated")
            await text_turn(s)
            await audio_turn(s)
            await tool_turn(s)
            await barge_in_turn(s)
            await error_turn(s)
            await recycle_turn(s, edge)
        finally:
            await t.stop()
    assert not t.verdict.failures, t.verdict.report()
    assert len(t.verdict.events) > 100  # a whole conversation was judged
    typed = t.typed[0]
    if dialect == "ga":  # the SDK's typed view works: a GA app reads its nested session and hears audio
        assert created["session"]["type"] == "realtime"
        assert typed.session.audio.output.voice
        assert any(type(e).__name__ == "ResponseAudioDeltaEvent" and e.type == "response.output_audio.delta"
                   for e in t.typed)
    else:
        assert typed.session.voice
        assert any(type(e).__name__ == "ResponseAudioDeltaEvent" and e.type == "response.audio.delta"
                   for e in t.typed)
    await edge.wait_idle()


@pytest.mark.parametrize("dialect", ["ga", "beta"])
async def test_sdk_client_gets_valid_errors_when_the_upstream_fails(edge_factory, dialect: str) -> None:
    """The upstream closes mid-call (the built-in assistant's ``disconnect``), then cannot be reached:
    the client's error events and the close are valid for the SDK too."""
    edge = await edge_factory()
    token = await edge.token()
    async with connect(sdk_client(edge, token), dialect) as conn:
        t = SdkTransport(conn, dialect)
        try:
            s = Script(t)
            await s.until("session.updated")
            await t.send({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "disconnect"}]}})
            err = (await s.until("error"))[-1]
            assert err["error"]["code"] == "upstream_closed"
            async with asyncio.timeout(10):
                await asyncio.gather(t._reader, return_exceptions=True)  # relay closes the socket
        finally:
            await t.stop()
    unreachable = await edge.assistant(name="Gone", provider="compatible", upstream_url="ws://127.0.0.1:9/v1/realtime")
    async with connect(sdk_client(edge, await edge.token(assistant_id=unreachable["id"])), dialect) as conn:
        t2 = SdkTransport(conn, dialect)
        try:
            err = (await Script(t2).until("error"))[-1]
            assert err["error"]["code"] == "upstream_unavailable"
        finally:
            await t2.stop()
    for verdict in (t.verdict, t2.verdict):
        assert not verdict.failures, verdict.report()
    await edge.wait_idle()
