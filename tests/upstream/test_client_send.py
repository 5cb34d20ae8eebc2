"""UpstreamClient's send path against a real aiohttp WebSocket server that is not relay's.

Sends are written inside ``send`` while the socket keeps up; when the server stops reading and
the transport pauses, they wait in a bounded queue (order kept, the rest refused and counted).
The server side parses what arrives with ``json`` and the ``openai`` SDK's event models.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import socket
import warnings

import aiohttp
import orjson
import pytest
from aiohttp import web
from openai.types.beta.realtime import InputAudioBufferAppendEvent as BetaAppend
from openai.types.realtime import InputAudioBufferAppendEvent as GaAppend

from relay.bridge import append_json
from relay.call.upstream import UpstreamClient, connect_request
from relay.models import Assistant

BIG = "x" * 16384  # per event: a few hundred fill loopback's socket buffers once the server stops reading


class Server:
    """One WebSocket at a time; ``gate`` closed: the server's transport stops reading."""

    def __init__(self) -> None:
        self.frames: list[tuple[aiohttp.WSMsgType, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.abort = asyncio.Event()
        self.got = asyncio.Condition()
        self.url = ""

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        if not self.gate.is_set():
            transport.pause_reading()
            await self.gate.wait()
            transport.resume_reading()
        if self.abort.is_set():
            transport.abort()
            return ws
        async for msg in ws:
            async with self.got:
                self.frames.append((msg.type, msg.data))
                self.got.notify_all()
        return ws

    async def wait_for(self, count: int) -> None:
        async with self.got:
            await asyncio.wait_for(self.got.wait_for(lambda: len(self.frames) >= count), 20)


@pytest.fixture
async def server():
    srv = Server()
    app = web.Application()
    app.router.add_get("/v1/realtime", srv.handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"ws://127.0.0.1:{port}/v1/realtime"
    yield srv
    srv.gate.set()
    await runner.cleanup()


def client_for(http: aiohttp.ClientSession, url: str, **kw) -> UpstreamClient:
    return UpstreamClient(http, connect_request(Assistant(id="a", name="n", provider="compatible", upstream_url=url)),
                          **kw)


async def connected(http: aiohttp.ClientSession, url: str, **kw) -> UpstreamClient:
    client = client_for(http, url, **kw)
    await client.connect()
    sock = client._ws.get_extra_info("socket")  # type: ignore[union-attr]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # fills in a few sends once the server stops reading
    return client


def fill(client: UpstreamClient, limit: int = 3000) -> list[bool]:
    """Send numbered big events without yielding to the loop until one is refused (the queue is full)."""
    results: list[bool] = []
    for seq in range(limit):
        results.append(client.send({"type": "conversation.item.create", "seq": seq, "pad": BIG}))
        if not results[-1]:
            break
    return results


async def test_writes_at_once_when_the_socket_keeps_up(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        client = await connected(http, server.url)
        for seq in range(5):
            assert client.send({"type": "input_audio_buffer.clear", "seq": seq})
            assert client.queued_sends == 0  # written inside send(): nothing waits for the writer task
        await server.wait_for(5)
        assert [json.loads(text)["seq"] for _, text in server.frames] == list(range(5))
        assert {kind for kind, _ in server.frames} == {aiohttp.WSMsgType.TEXT}
        await client.close()


async def test_back_pressure_keeps_order_bounds_the_queue_and_counts_drops(server: Server) -> None:
    server.gate.clear()
    async with aiohttp.ClientSession() as http:
        client = await connected(http, server.url, send_queue_max=8)
        results = fill(client)
        accepted = results.count(True)
        assert results[-1] is False and all(results[:-1]), "the server stopped reading: sends must be refused"
        assert client.queued_sends == 8 and client.dropped_sends == 1
        assert not client.send({"type": "conversation.item.create", "seq": -1}) and client.dropped_sends == 2
        server.gate.set()  # the server reads again: everything accepted arrives, in order, once
        await server.wait_for(accepted)
        assert [json.loads(text)["seq"] for _, text in server.frames] == list(range(accepted))
        # drained: writes go out at once again, after the queued ones
        for _ in range(200):
            if client.queued_sends == 0:
                break
            await asyncio.sleep(0.01)
        assert client.queued_sends == 0
        assert client.send({"type": "conversation.item.create", "seq": accepted})
        await server.wait_for(accepted + 1)
        assert json.loads(server.frames[-1][1])["seq"] == accepted
        await client.close()


async def test_close_while_writes_wait(server: Server) -> None:
    server.gate.clear()
    async with aiohttp.ClientSession() as http:
        client = await connected(http, server.url, send_queue_max=4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = fill(client)
            assert results[-1] is False and client.queued_sends == 4
            await client.close()
            gc.collect()
        assert not [w for w in caught if "coroutine" in str(w.message)]  # the waiting send was ended, not leaked
        assert client.queued_sends == 0 and not client.connected
        dropped = client.dropped_sends
        assert not client.send({"type": "input_audio_buffer.clear"})
        assert not client.send_json(append_json(b"\x00" * 8))
        assert client.dropped_sends == dropped + 2
        assert client.close_reason == "closed by relay"
        await client.close()  # idempotent


async def test_a_failed_write_closes_and_refuses_later_sends(server: Server) -> None:
    server.gate.clear()
    server.abort.set()
    async with aiohttp.ClientSession() as http:
        client = await connected(http, server.url)
        server.gate.set()  # the server drops the TCP connection
        sent = 0
        for _ in range(500):
            if not client.send({"type": "input_audio_buffer.clear"}):
                break
            sent += 1
            await asyncio.sleep(0.01)
        assert client.dropped_sends == 1
        assert client.close_reason is not None and client.close_reason.startswith("send failed")
        assert not client.send({"type": "input_audio_buffer.clear"}) and client.dropped_sends == 2
        await client.close()


@pytest.mark.parametrize("audio", [b"", b"\x01", b"\xff\xfe", bytes(range(256)) * 8])
def test_append_json_is_the_event_an_outside_parser_expects(audio: bytes) -> None:
    data = append_json(audio)
    expected = {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()}
    assert data == orjson.dumps(expected)
    assert json.loads(data) == expected
    for model in (BetaAppend, GaAppend):
        event = model.model_validate_json(data)
        assert event.type == "input_audio_buffer.append" and base64.b64decode(event.audio) == audio


async def test_appends_on_the_wire_parse_in_the_sdk(server: Server) -> None:
    chunks = [bytes([i]) * 1920 for i in range(6)]
    async with aiohttp.ClientSession() as http:
        client = await connected(http, server.url)
        for chunk in chunks:
            assert client.send_json(append_json(chunk))
        await server.wait_for(len(chunks))
        await client.close()
    for (kind, text), chunk in zip(server.frames, chunks, strict=True):
        assert kind == aiohttp.WSMsgType.TEXT
        assert base64.b64decode(BetaAppend.model_validate_json(text).audio) == chunk
        assert base64.b64decode(GaAppend.model_validate_json(text).audio) == chunk


def test_queue_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        UpstreamClient(None, connect_request(Assistant(id="a", name="n", provider="compatible",  # type: ignore[arg-type]
                                                       upstream_url="ws://127.0.0.1:1/")), send_queue_max=0)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_the_queue_setting_cannot_switch_the_bound_off(value: str) -> None:
    from relay.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="upstream_send_queue_max"):
        load_settings(environ={"RELAY_UPSTREAM_SEND_QUEUE_MAX": value})
