"""The worker's call plane: settings checked once when it is built, admission counted, start and close."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from relay.call.plane import CallLimitReached, CallPlane, ClientCallLimitReached
from relay.media.plane import MediaPlane
from relay.settings import SettingsError, load_settings


def _settings(tmp_path: Path, **overrides: object):
    return load_settings(environ={}, **{"data_dir": str(tmp_path), "ice_host_addresses": ["127.0.0.1"], **overrides})


def _udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.parametrize(("overrides", "message"), [
    ({"ice_public_ip": "relay.example"}, "ice_public_ip is not an IP address: 'relay.example'"),
    ({"ice_host_addresses": ["127.0.0.1", "eth0"]}, "ice_host_addresses: not an IP address: 'eth0'"),
    ({"ice_port_min": 40010, "ice_port_max": 40000, "ice_mux": False}, "ice_port_min/ice_port_max: need"),
    ({"ice_port_min": 40000, "ice_port_max": 40010}, "set ice_mux = false to use them"),
    ({"ice_udp_port": 70000}, "ice_udp_port: need 0..65535"),
    ({"dtls_cert_rotate_s": 40 * 86400.0}, "dtls_cert_rotate_s: need 0 < s <= 2160000"),
])
def test_bad_ice_and_dtls_settings_are_refused_when_the_plane_is_built(tmp_path: Path, overrides: dict,
                                                                        message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        MediaPlane(_settings(tmp_path, **overrides))


async def test_admission_counts_refusals_and_gives_slots_back(tmp_path: Path) -> None:
    plane = CallPlane(_settings(tmp_path, max_calls=2, max_calls_per_client=1))
    plane.admit("a")
    with pytest.raises(ClientCallLimitReached):
        plane.admit("a")
    plane.admit("b")
    with pytest.raises(CallLimitReached):
        plane.admit("c")
    assert plane.metrics.calls_rejected == 2 and plane.registry.load == 2
    plane.unadmit("a")
    plane.admit("c")
    assert plane.registry.load == 2 and plane.metrics.calls_rejected == 2


async def test_start_and_close_without_a_database(tmp_path: Path) -> None:
    plane = MediaPlane(_settings(tmp_path, upstream_url="ws://127.0.0.1:9/never"))
    await plane.start(None)
    try:
        assert plane.mux is not None and _udp_port_taken(plane.mux.port)  # the worker's ICE port is bound
        assert plane.usage_book is None and plane.fleet is None and not plane.local_assistant_url
        assert plane.http is not None and not plane.http.closed
    finally:
        await plane.close()
    assert not _udp_port_taken(plane.mux.port) and plane.http.closed and plane.tool_http is not None and plane.tool_http.closed


async def test_more_than_a_hundred_upstream_sockets_open_at_once(tmp_path: Path) -> None:
    """aiohttp's default connector holds 100 connections: the 101st call's upstream connect waited for
    a call to end. The plane's session holds one per call (two per call while recycling)."""
    import asyncio

    from aiohttp import web

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for _ in sock:
            pass
        return sock

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    plane = CallPlane(_settings(tmp_path, max_calls=60, upstream_url="ws://127.0.0.1:9/never"))
    await plane.start(None)
    sockets = []
    try:
        assert plane.http is not None
        async with asyncio.timeout(30):
            for _ in range(120):  # max_calls 60: two each
                sockets.append(await plane.http.ws_connect(f"http://127.0.0.1:{port}/ws"))
        assert len(sockets) == 120 and not any(s.closed for s in sockets)
    finally:
        for s in sockets:
            await s.close()
        await plane.close()
        await runner.cleanup()
