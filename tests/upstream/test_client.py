"""The upstream client: per-provider URL/headers, and a real WebSocket against the local assistant."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from relay.assistant import start_local_assistant
from relay.call.upstream import UpstreamClient, UpstreamError, connect_request
from relay.models import Assistant
from relay.upstream.session import session_update


def asst(**kw) -> Assistant:
    return Assistant(**{"id": "a", "name": "n", **kw})


def test_openai_beta_request() -> None:
    req = connect_request(asst(provider="openai", api_key="sk-1", model="gpt-realtime", dialect="beta"))
    assert req.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert req.headers == {"Authorization": "Bearer sk-1", "OpenAI-Beta": "realtime=v1"}
    assert "sk-1" not in repr(req)


def test_openai_ga_request_keeps_existing_model() -> None:
    req = connect_request(asst(provider="openai", api_key="k", upstream_url="wss://gw.example/v1/realtime?model=x",
                               model="y", dialect="ga"))
    assert parse_qs(urlsplit(req.url).query) == {"model": ["x"]}
    assert "OpenAI-Beta" not in req.headers


def test_azure_request() -> None:
    url = "wss://res.openai.azure.com/openai/realtime?api-version=2024-10-01-preview&deployment=gpt-4o-rt"
    req = connect_request(asst(provider="azure", api_key="az", upstream_url=url, model="m", dialect="beta"))
    assert req.url == url
    assert req.headers["api-key"] == "az" and "Authorization" not in req.headers
    ga = connect_request(asst(provider="azure", api_key="az", upstream_url="wss://res.openai.azure.com/openai/v1/realtime",
                              model="dep", dialect="ga"))
    assert ga.url.endswith("/openai/v1/realtime?model=dep")


def test_compatible_and_local() -> None:
    req = connect_request(asst(provider="compatible", upstream_url="ws://127.0.0.1:1/v1/realtime", model="m"))
    assert req.url == "ws://127.0.0.1:1/v1/realtime?model=m" and "Authorization" not in req.headers
    loc = connect_request(asst(provider="local", model="relay-echo"), local_url="ws://127.0.0.1:5/v1/realtime")
    assert loc.url == "ws://127.0.0.1:5/v1/realtime?model=relay-echo"


@pytest.mark.parametrize("url", ["", "ftp://x/y"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(UpstreamError):
        connect_request(asst(provider="compatible", upstream_url=url))


@pytest.mark.parametrize("dialect", ["beta", "ga"])
async def test_client_against_local_assistant(dialect: str) -> None:
    runner, url = await start_local_assistant()
    try:
        a = asst(provider="local", model="relay-echo", dialect=dialect, instructions="Be brief.")
        async with aiohttp.ClientSession() as http:
            client = UpstreamClient(http, connect_request(a, local_url=url))
            await client.connect()
            assert client.send(session_update(a, dialect=dialect))
            seen = []
            async for ev in client.events():
                seen.append(ev)
                if ev["type"] == "session.updated":
                    break
            assert [e["type"] for e in seen] == ["session.created", "session.updated"]  # no error: shape accepted
            session = seen[-1]["session"]
            assert session["instructions"] == "Be brief."
            if dialect == "ga":
                assert session["audio"]["output"]["voice"] == "alloy"
            else:
                assert session["voice"] == "alloy"
            await client.close()
            assert not client.connected and not client.send({"type": "x"})
    finally:
        await runner.cleanup()


async def test_close_reason_when_upstream_closes() -> None:
    runner, url = await start_local_assistant()
    try:
        async with aiohttp.ClientSession() as http:
            client = UpstreamClient(http, connect_request(asst(provider="local", model="relay-fail"), local_url=url))
            await client.connect()
            types = [ev["type"] async for ev in client.events()]
            assert types == ["session.created"]
            assert client.close_reason == "upstream closed (code 1011)"
            await client.close()
    finally:
        await runner.cleanup()


@pytest.fixture
async def odd_server():
    """401 on the handshake, and a handler that never answers."""
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=401, text="no")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/refuse", refuse)
    app.router.add_get("/hang", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"ws://127.0.0.1:{port}"
    await runner.cleanup()


async def test_connect_failures(odd_server: str) -> None:
    async with aiohttp.ClientSession() as http:
        cases = [
            (odd_server + "/refuse", 5.0, "HTTP 401"),
            (odd_server + "/hang", 0.2, "timed out"),
            ("ws://127.0.0.1:9/v1/realtime", 5.0, "unreachable"),
        ]
        for url, timeout_s, needle in cases:
            client = UpstreamClient(http, connect_request(asst(provider="compatible", upstream_url=url)),
                                    connect_timeout_s=timeout_s)
            with pytest.raises(UpstreamError, match=needle):
                await client.connect()
            await client.close()


@pytest.fixture
async def big_frame_server():
    """A WebSocket upstream that sends one text frame of 4 KiB, then waits."""
    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type": "session.created", "session": {}}')
        await ws.send_str('{"type": "x", "pad": "' + "a" * 4096 + '"}')
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/v1/realtime", ws_handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"ws://127.0.0.1:{port}/v1/realtime"
    await runner.cleanup()


async def test_oversized_upstream_frame_has_a_clear_reason(big_frame_server: str, monkeypatch) -> None:
    """Issue 14, item 9: the call ended with "upstream error: None"."""
    from relay.call import upstream as client_mod

    monkeypatch.setattr(client_mod, "MAX_UPSTREAM_MESSAGE_BYTES", 1024)
    async with aiohttp.ClientSession() as http:
        client = UpstreamClient(http, connect_request(asst(provider="compatible", upstream_url=big_frame_server)))
        await client.connect()
        types = [ev["type"] async for ev in client.events()]
        assert types == ["session.created"]
        assert client.close_reason == "upstream sent a message larger than the 1024-byte limit"
        await client.close()
