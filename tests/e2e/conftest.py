"""End-to-end fixtures: a real relay app on 127.0.0.1 (aiohttp TestServer), its built-in local
assistant, and devices from relay's Python device SDK (real aiortc peers, ICE on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from relay.client import RelayClient
from relay.media import ice
from relay.settings import load_settings
from relay.web.app import create_app
from relay.web.realtime import MEDIA, MediaPlane

LOOPBACK = ["127.0.0.1"]


@dataclass
class Relay:
    app: Any
    server: TestServer

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def plane(self) -> MediaPlane:
        return self.app[MEDIA]

    def device(self, **kwargs: Any) -> RelayClient:
        kwargs.setdefault("demo", True)
        kwargs.setdefault("host_addresses", LOOPBACK)
        return RelayClient(self.base_url, str(uuid.uuid4()), uuid.uuid4().hex + uuid.uuid4().hex, **kwargs)

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until every call of this relay has ended and been torn down."""
        async with asyncio.timeout(timeout_s):
            while len(self.plane.registry) or any(not c.closed for c in self.plane.registry.calls()):  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.05)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_peers() -> int:
    """aiortc peer connections (relay's and the test devices') not closed yet."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed")


@pytest.fixture
async def relay_factory(tmp_path) -> AsyncIterator[Callable[..., Awaitable[Relay]]]:
    servers: list[TestServer] = []
    ice.configure_host_addresses(LOOPBACK)

    async def start(**overrides: Any) -> Relay:
        values: dict[str, Any] = {
            "data_dir": str(tmp_path / f"relay{len(servers)}"),
            "demo_mode": True,
            "ice_host_addresses": LOOPBACK,
            "tool_allow_private": True,
            "log_format": "text",
        }
        values.update(overrides)
        settings = load_settings(environ={}, **values)
        server = TestServer(create_app(settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Relay(app=server.app, server=server)

    yield start
    for server in servers:
        await server.close()
    ice.configure_host_addresses([])


ICE_MODES = {"mux": {"ice_mux": True}, "ports": {"ice_mux": False}}  # the worker's one ICE port / a port per call


def both_ice_modes(test: Any) -> Any:
    """Run ``test`` (using the ``relay`` fixture) once with the worker's one ICE port, once with a port per call."""
    return pytest.mark.parametrize("relay", list(ICE_MODES), indirect=True)(test)


@pytest.fixture
async def relay(relay_factory, request) -> AsyncIterator[Relay]:
    """A relay with default settings (built-in local assistant in echo mode, beta dialect), and a
    leak check: after the test's calls end, no call, task, peer or socket is left behind.
    Parametrized indirectly (``both_ice_modes``): ``"mux"`` or ``"ports"`` picks the ICE mode."""
    mode = getattr(request, "param", None)
    r = await relay_factory(**ICE_MODES[mode] if mode else {})
    await asyncio.sleep(0)
    tasks_before = len(asyncio.all_tasks())
    fds_before = open_fds()
    yield r
    await r.wait_idle()
    await asyncio.sleep(0.2)  # let aiortc's own close tasks finish
    assert len(r.plane.registry) == 0
    assert r.plane.clock.listener_count == 0
    leftover = [t for t in asyncio.all_tasks() if not t.done()]
    assert len(leftover) <= tasks_before, [t.get_name() for t in leftover]
    assert open_fds() <= fds_before + 2  # keep-alive HTTP connections of the test client may linger
    assert live_peers() == 0
