"""The WebRTC data channel judged by the official ``openai`` SDK's models: a real aiortc device
(``relay.client``) that speaks GA on a channel labelled ``oai-events`` (as OpenAI's own WebRTC
clients do) and one that speaks beta on ``messages`` (the device documents' label) each get only
valid events of their dialect, with upstreams of both dialects: whole conversations with speech
over RTP, text, a client-side tool, a barge-in (``output_audio_buffer.clear``), errors and an
upstream recycle."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from relay.client import RelayClient, encode_pcm16_to_opus
from relay.media import ice
from relay.settings import load_settings
from relay.web.app import create_app
from relay.web.realtime import MEDIA

from .conversation import Script, error_turn, text_turn, tool_turn
from .judge import Verdict, violation

pytestmark = pytest.mark.slow
RATE = 48000
LOOPBACK = ["127.0.0.1"]
LABELS = {"ga": "oai-events", "beta": "messages"}


def speech(seconds_on: float = 0.8, total_s: float = 2.0, hz: float = 440.0) -> np.ndarray:
    out = np.zeros(int(total_s * RATE), np.int16)
    n = int(seconds_on * RATE)
    out[int(0.3 * RATE):int(0.3 * RATE) + n] = (np.sin(2 * np.pi * hz * np.arange(n) / RATE) * 9000).astype(np.int16)
    return out


class DeviceTransport:
    """A relay.client device; every data-channel event it receives is judged."""

    def __init__(self, device: RelayClient, dialect: str) -> None:
        self.device = device
        self.verdict = Verdict(dialect)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_event(self, event: dict[str, Any]) -> None:
        self.verdict.add(event)
        self.queue.put_nowait(event)

    async def send(self, event: dict[str, Any]) -> None:
        self.device.send_event(event)

    async def next_event(self) -> dict[str, Any]:
        return await self.queue.get()


@pytest.fixture
async def relay_factory(tmp_path) -> AsyncIterator[Any]:
    servers: list[TestServer] = []
    ice.configure_host_addresses(LOOPBACK)

    async def start(upstream_dialect: str) -> TestServer:
        settings = load_settings(environ={}, data_dir=str(tmp_path / f"relay{len(servers)}"), demo_mode=True,
                                 ice_host_addresses=LOOPBACK, log_format="text", upstream_dialect=upstream_dialect,
                                 upstream_recycle_s=4)
        server = TestServer(create_app(settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()
    ice.configure_host_addresses([])


async def barge_in_turn(s: Script) -> None:
    """The device interrupts a spoken answer: relay stops playout and tells it (``output_audio_buffer.cleared``)."""
    await s.t.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "tell me a long story"}]}})
    await s.t.send({"type": "response.create"})
    await s.until("output_audio_buffer.started")
    await s.t.send({"type": "output_audio_buffer.clear"})
    await s.until("output_audio_buffer.cleared")


async def recycle_turn(s: Script, server: TestServer) -> None:
    (call,) = server.app[MEDIA].registry.calls()
    first = call.upstream
    async with asyncio.timeout(20):
        while call.upstream is first:  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)
    await text_turn(s)


@pytest.mark.parametrize("upstream", ["beta", "ga"])
@pytest.mark.parametrize("dialect", ["ga", "beta"])
async def test_device_gets_only_valid_events(relay_factory, dialect: str, upstream: str) -> None:
    server = await relay_factory(upstream)
    url = str(server.make_url("")).rstrip("/")
    device = RelayClient(url, str(uuid.uuid4()), uuid.uuid4().hex * 2, host_addresses=LOOPBACK, demo=True)
    t = DeviceTransport(device, dialect)
    async with device:
        await device.connect(audio_source=encode_pcm16_to_opus(speech(), RATE), on_event=t.on_event,
                             datachannel_label=LABELS[dialect])
        s = Script(t)
        # the speech sent over RTP is answered: transcript events in the device's dialect, playout events
        transcript_done = "response.output_audio_transcript.done" if dialect == "ga" else \
            "response.audio_transcript.done"
        heard = await s.until("output_audio_buffer.stopped")
        assert transcript_done in [e["type"] for e in heard]
        await text_turn(s)
        await tool_turn(s)
        await barge_in_turn(s)
        await error_turn(s)
        await recycle_turn(s, server)
    assert not t.verdict.failures, t.verdict.report()
    assert len(t.verdict.events) > 30
    assert t.verdict.events[0]["type"] == "session.created"
    assert (t.verdict.events[0]["session"].get("type") == "realtime") == (dialect == "ga")


async def test_oai_events_label_is_a_first_guess_the_events_shape_decides(relay_factory) -> None:
    """A device on ``oai-events`` starts in GA; its first beta-shaped event switches it to beta."""
    server = await relay_factory("beta")
    url = str(server.make_url("")).rstrip("/")
    device = RelayClient(url, str(uuid.uuid4()), uuid.uuid4().hex * 2, host_addresses=LOOPBACK, demo=True)
    async with device:
        await device.connect(datachannel_label="oai-events")
        created = await device.next_event("session.created")
        assert created["session"]["type"] == "realtime" and "audio" in created["session"]
        await device.next_event("session.updated")
        device.send_event({"type": "session.update", "session": {"modalities": ["text", "audio"]}})  # beta-shaped
        updated = await device.next_event("session.updated")
        assert "type" not in updated["session"] and updated["session"]["modalities"] == ["text", "audio"]
        assert violation(updated, "beta") is None
