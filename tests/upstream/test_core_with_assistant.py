"""The call core driven by a real upstream: UpstreamClient <-> the local assistant, both dialects.

No WebRTC here (that is the media plane's end-to-end suite): the test plays the edge,
feeding the core and pulling its frames, to prove the protocol side end to end:
echoed audio plays out exactly (pcm16 and G.711, no transcoding), events reach the device in its dialect, barge-in
truncates are accepted by the upstream, and the next response is heard.
"""

from __future__ import annotations

import asyncio
import contextlib
from array import array

import aiohttp
import pytest

from relay._fast import alaw_encode, ulaw_encode
from relay.assistant import start_local_assistant
from relay.bridge import CallCore, EndCall, SendDevice, SendUpstream, append_json
from relay.call.upstream import UpstreamClient, connect_request
from relay.models import Assistant

WAIT_S = 10.0  # safety net only


def tone(ms: int, freq_hz: float, amplitude: int = 8000, fmt: str = "pcm16") -> bytes:
    import math

    rate = 24000 if fmt == "pcm16" else 8000
    n = rate * ms // 1000
    pcm = array("h", (int(amplitude * math.sin(2 * math.pi * freq_hz * i / rate)) for i in range(n))).tobytes()
    if fmt == "g711_ulaw":
        return ulaw_encode(pcm)
    if fmt == "g711_alaw":
        return alaw_encode(pcm)
    return pcm


def silence(ms: int, fmt: str) -> bytes:
    return bytes(48 * ms) if fmt == "pcm16" else bytes([0xFF if fmt == "g711_ulaw" else 0xD5]) * (8 * ms)


class Edge:
    def __init__(self, core: CallCore, client: UpstreamClient) -> None:
        self.core = core
        self.client = client
        self.device: list[dict] = []
        self.ended: list[str] = []
        self.changed = asyncio.Event()
        self.t = 0.0

    def perform(self) -> None:
        for a in self.core.drain_actions():
            if isinstance(a, SendUpstream):
                assert self.client.send(a.event)
            elif isinstance(a, SendDevice):
                self.device.append(a.event)
            elif isinstance(a, EndCall):
                self.ended.append(a.reason)
        self.changed.set()

    async def pump(self) -> None:
        async for ev in self.client.events():
            self.core.on_upstream_event(ev, self.t)
            self.perform()
        self.core.on_upstream_closed(self.client.close_reason or "closed", self.t)
        self.perform()

    async def wait_for(self, etype: str, count: int = 1) -> None:
        async with asyncio.timeout(WAIT_S):
            while sum(1 for e in self.device if e["type"] == etype) < count:
                self.changed.clear()
                await self.changed.wait()

    def pull(self, n: int) -> list[bytes | None]:
        out = []
        for _ in range(n):
            self.t += 0.02
            out.append(self.core.pull_frame(self.t))
        self.perform()
        return out

    def pull_all(self) -> bytes:
        audio = b""
        while True:
            [f] = self.pull(1)
            if f is None:
                return audio
            audio += f


@pytest.mark.parametrize(("dialect", "fmt"), [("beta", "pcm16"), ("ga", "pcm16"), ("beta", "g711_ulaw"),
                                           ("ga", "g711_alaw")])
async def test_echo_barge_in_and_next_response(dialect: str, fmt: str) -> None:
    runner, url = await start_local_assistant(speedup=20.0)
    task = None
    try:
        assistant = Assistant(id="a", name="n", provider="local", model="relay-echo", dialect=dialect,
                              instructions="SECRET")
        async with aiohttp.ClientSession() as http:
            client = UpstreamClient(http, connect_request(assistant, local_url=url))
            await client.connect()
            core = CallCore(assistant, now=0.0, audio_format=fmt)
            edge = Edge(core, client)
            core.on_upstream_opened(0.0)
            edge.perform()
            task = asyncio.create_task(edge.pump())
            await edge.wait_for("session.updated")
            chunk = core.frame_bytes

            speech = tone(1000, 440, fmt=fmt)
            audio1 = speech + silence(700, fmt)
            for i in range(0, len(audio1), chunk):
                client.send_json(append_json(audio1[i:i + chunk]))
            await edge.wait_for("response.done")
            kinds = [e["type"] for e in edge.device]
            assert "conversation.item.input_audio_transcription.completed" in kinds
            assert "response.audio_transcript.delta" in kinds  # device speaks beta by default
            assert not any("audio.delta" in k for k in kinds)  # audio only through pull_frame
            assert "error" not in kinds
            assert all("SECRET" not in str(e) for e in edge.device)

            # play 200 ms, then the user speaks again: barge-in
            first = edge.pull(10)
            assert all(f is not None for f in first)
            assert "output_audio_buffer.started" in [e["type"] for e in edge.device]
            speech2 = tone(600, 700, fmt=fmt)
            audio2 = speech2 + silence(700, fmt)
            for i in range(0, len(audio2), chunk):
                client.send_json(append_json(audio2[i:i + chunk]))
            await edge.wait_for("conversation.item.truncated")
            truncated = next(e for e in edge.device if e["type"] == "conversation.item.truncated")
            assert truncated["audio_end_ms"] == 200
            assert "output_audio_buffer.cleared" in [e["type"] for e in edge.device]
            await edge.wait_for("response.done", 2)
            assert "error" not in [e["type"] for e in edge.device]
            # the next response is heard, exactly
            played = edge.pull_all()
            assert speech2 in played
            assert [e["type"] for e in edge.device].count("output_audio_buffer.stopped") == 1
            assert core.usage_totals["total_tokens"] > 0
            assert not edge.ended
            await client.close()
            await asyncio.wait_for(task, WAIT_S)
            assert edge.ended == ["upstream_closed"]
    finally:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()


async def test_upstream_failure_reaches_device_as_error() -> None:
    runner, url = await start_local_assistant()
    try:
        assistant = Assistant(id="a", name="n", provider="local", model="relay-fail")
        async with aiohttp.ClientSession() as http:
            client = UpstreamClient(http, connect_request(assistant, local_url=url))
            await client.connect()
            core = CallCore(assistant, now=0.0)
            edge = Edge(core, client)
            core.on_upstream_opened(0.0)
            edge.perform()
            await asyncio.wait_for(edge.pump(), WAIT_S)
            err = edge.device[-1]
            assert err["type"] == "error" and err["error"]["code"] == "upstream_closed"
            assert "1011" in err["error"]["message"]
            assert edge.ended == ["upstream_closed"]
            await client.close()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("dialect", ["beta", "ga"])
async def test_recycle_replays_history_the_upstream_accepts(dialect: str) -> None:
    from relay.bridge import RecycleUpstream

    runner, url = await start_local_assistant(speedup=50.0)
    tasks: list[asyncio.Task] = []
    try:
        assistant = Assistant(id="a", name="n", provider="local", model="relay-echo", dialect=dialect)
        async with aiohttp.ClientSession() as http:
            core = CallCore(assistant, now=0.0, recycle_after_s=100)
            first = UpstreamClient(http, connect_request(assistant, local_url=url))
            await first.connect()
            edge = Edge(core, first)
            core.on_upstream_opened(0.0)
            edge.perform()
            tasks.append(asyncio.create_task(edge.pump()))
            await edge.wait_for("session.updated")
            core.on_device_message(b'{"type":"conversation.item.create","item":{"type":"message","role":"user",'
                                   b'"content":[{"type":"input_text","text":"remember the blue door"}]}}', 1.0)
            core.on_device_message(b'{"type":"response.create"}', 1.0)
            edge.perform()
            await edge.wait_for("response.done")
            edge.pull_all()
            shown = len(edge.device)

            core.on_timer(100.0)
            assert core.drain_actions() == [RecycleUpstream("expiry")]
            second = UpstreamClient(http, connect_request(assistant, local_url=url))
            await second.connect()
            raw: list[dict] = []

            async def pump_second() -> None:
                async for ev in second.events():
                    raw.append(ev)
                    core.on_upstream_event(ev, 101.0)
                    edge.perform()

            edge.client = second
            old_pump = tasks.pop()
            old_pump.cancel()  # the edge ignores the old socket from now on (it would report its close)
            with contextlib.suppress(asyncio.CancelledError):
                await old_pump
            await first.close()
            tasks.append(asyncio.create_task(pump_second()))
            core.on_upstream_opened(101.0)
            edge.perform()
            async with asyncio.timeout(WAIT_S):
                while sum(1 for e in raw if e["type"] in ("conversation.item.created", "conversation.item.added")) < 2:
                    edge.changed.clear()
                    await edge.changed.wait()
            assert not [e for e in raw if e["type"] == "error"]  # the replayed items are valid for the upstream
            texts = [c.get("text") for e in raw if e["type"] in ("conversation.item.created", "conversation.item.added")
                     for c in e["item"].get("content", [])]
            assert texts == ["remember the blue door", "You said: remember the blue door"]
            assert edge.device[shown:] == []  # the device noticed nothing
            # and the call goes on over the new upstream
            core.on_device_message(b'{"type":"conversation.item.create","item":{"type":"message","role":"user",'
                                   b'"content":[{"type":"input_text","text":"again"}]}}', 102.0)
            core.on_device_message(b'{"type":"response.create"}', 102.0)
            edge.perform()
            await edge.wait_for("response.done", 2)
            assert next(e for e in reversed(edge.device) if e["type"] == "response.audio_transcript.done")[
                "transcript"] == "You said: again"
            await second.close()
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await runner.cleanup()
