"""The server-side tool executor against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web

from relay.call.tools import ToolRefused, address_is_public, check_url, make_tool_session, run_webhook_tool


@pytest.fixture
async def hook_server():
    seen: list[dict] = []

    async def ok(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"temperature": 72})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain answer")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest")

    app = web.Application()
    for path, h in (("/ok", ok), ("/text", text), ("/fail", fail), ("/slow", slow), ("/big", big),
                    ("/redirect", redirect)):
        app.router.add_post(path, h)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def call(url: str, allow_private: bool = True, **kw) -> dict:
    async with make_tool_session(allow_private=allow_private) as session:
        out = await run_webhook_tool(session, url, name="get_weather", call_id="c1",
                                     arguments='{"location": "SF"}', allow_private=allow_private, **kw)
    return orjson.loads(out)


async def test_webhook_round_trip(hook_server) -> None:
    base, seen = hook_server
    assert await call(base + "/ok") == {"temperature": 72}
    assert seen == [{"name": "get_weather", "call_id": "c1", "arguments": {"location": "SF"}}]


async def test_non_json_answer_wrapped(hook_server) -> None:
    assert await call(hook_server[0] + "/text") == {"result": "plain answer"}


@pytest.mark.parametrize(
    ("path", "kw", "needle"),
    [("/fail", {}, "HTTP 503"), ("/slow", {"timeout_s": 0.2}, "timed out"),
     ("/big", {"max_response_bytes": 1000}, "more than 1000 bytes"), ("/redirect", {}, "HTTP 302"),
     ("/missing", {}, "HTTP 404")],
)
async def test_webhook_failures_become_error_json(hook_server, path: str, kw: dict, needle: str) -> None:
    out = await call(hook_server[0] + path, **kw)
    assert needle in out["error"]


async def test_loopback_refused_unless_allowed(hook_server) -> None:
    base, seen = hook_server
    out = await call(base + "/ok", allow_private=False)
    assert "refused" in out["error"]
    host_url = base.replace("127.0.0.1", "localhost")
    out = await call(host_url + "/ok", allow_private=False)
    assert "refused" in out["error"]
    assert seen == []


async def test_unreachable_is_error_json() -> None:
    out = await call("http://127.0.0.1:9/x")
    assert "failed" in out["error"]


@pytest.mark.parametrize(
    ("addr", "public"),
    [("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False), ("169.254.169.254", False),
     ("::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("0.0.0.0", False), ("100.64.0.1", False),
     ("8.8.8.8", True), ("2001:4860:4860::8888", True)],
)
def test_address_classification(addr: str, public: bool) -> None:
    assert address_is_public(addr) is public


def test_check_url() -> None:
    with pytest.raises(ToolRefused):
        check_url("ftp://example.com/x", allow_private=True)
    with pytest.raises(ToolRefused):
        check_url("http://[::1]:80/x", allow_private=False)
    check_url("https://example.com/hook", allow_private=False)  # names are checked at connect time
