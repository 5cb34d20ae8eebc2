"""Slow and silent HTTP connections are closed, and one address cannot hold many half-sent
requests (issue: 200 slow or silent connections were held for over 150 s, fds 19 -> 220, and
with a 256-fd limit /healthz failed, nothing logged). Raw sockets against ``relay serve``'s
runner (``RelayAppRunner`` with the settings' ``ConnectionLimits``), small limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from relay.ops.counters import OPS
from relay.web.app import create_app
from relay.web.server import ConnectionLimits, RelayAppRunner
from tests.conftest import base_settings

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"
SAFETY_S = 8.0  # a bound against hangs, not a timing assertion


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[tuple[web.Application, int]]:
    settings = base_settings(tmp_path, http_header_timeout_s=0.5, http_body_timeout_s=0.5,
                             http_keepalive_timeout_s=1.0, http_pending_per_address_max=3)
    app = create_app(settings)
    runner = RelayAppRunner(app, access_log=None, limits=ConnectionLimits.from_settings(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield app, runner.addresses[0][1]
    await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (raises TimeoutError if it never does)."""
    data = b""
    async with asyncio.timeout(SAFETY_S):
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:  # closed while the client was still writing: a reset, not a FIN
            pass
    return data


async def test_silent_connection_is_closed_and_counted(server, caplog) -> None:
    app, port = server
    caplog.set_level(logging.WARNING, "relay.access")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(reader) == b""
    writer.close()
    assert app[OPS].http_shed == {"header_timeout": 1}
    assert any("header timeout" in r.getMessage() for r in caplog.records)


async def test_headers_trickling_in_are_cut_at_the_header_timeout(server) -> None:
    app, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")

    async def trickle() -> None:
        while True:  # a header byte every 100 ms: progress, but never a whole request
            writer.write(b"X")
            await asyncio.sleep(0.1)

    task = asyncio.create_task(trickle())
    try:
        assert await closed_by_server(reader) == b""
    finally:
        task.cancel()
        writer.close()
    assert app[OPS].http_shed == {"header_timeout": 1}


async def test_stalled_body_is_abandoned(server, caplog) -> None:
    app, port = server
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/realtime HTTP/1.1\r\nHost: relay\r\nContent-Type: application/sdp\r\n"
                 b"X-Client-Id: c\r\nContent-Length: 5000\r\n\r\nv=0\r\n")
    await closed_by_server(reader)
    writer.close()
    assert app[OPS].http_shed.get("body_timeout") == 1
    await asyncio.sleep(0.1)  # the handler sees the connection go
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_idle_keepalive_connection_is_closed_after_a_served_request(server) -> None:
    app, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEALTHZ)
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    await closed_by_server(reader)  # the body, then the close after http_keepalive_timeout_s
    writer.close()
    assert app[OPS].http_shed == {}  # an idle keep-alive close is normal, not shedding


async def test_pending_connections_are_capped_per_address_and_served_ones_do_not_count(server) -> None:
    app, port = server
    # served keep-alive connections: no longer pending, so they do not use up the cap
    served = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTHZ)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        served.append(writer)
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEALTHZ)
    assert await closed_by_server(reader) == b""  # the 4th pending one: closed at once, unanswered
    writer.close()
    assert app[OPS].http_shed.get("pending_per_address") == 1
    for r, _ in silent:  # the silent ones go at the header timeout; then the address may connect again
        await closed_by_server(r)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEALTHZ)
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()
    for w in served + [w for _, w in silent]:
        w.close()


async def test_limits_of_serve_come_from_settings(tmp_path) -> None:
    limits = ConnectionLimits.from_settings(base_settings(tmp_path))
    assert limits == ConnectionLimits(header_timeout_s=10.0, body_timeout_s=10.0, keepalive_timeout_s=30.0,
                                      pending_per_address=1000)


def test_the_aiohttp_private_names_used_are_there() -> None:
    from relay.web import server

    server.check_supported()
    assert all("." in name for name in server._PRIVATE)


@pytest.mark.parametrize("name", ["http_header_timeout_s", "http_body_timeout_s", "http_pending_per_address_max",
                                  "upstream_heartbeat_s", "ws_heartbeat_s"])
def test_protective_limits_cannot_be_switched_off_by_a_zero(tmp_path, name) -> None:
    from relay.settings import SettingsError

    with pytest.raises(SettingsError, match=name):
        base_settings(tmp_path, **{name: 0})
