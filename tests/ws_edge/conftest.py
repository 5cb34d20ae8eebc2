"""WebSocket edge fixtures: a real relay app on 127.0.0.1 (aiohttp TestServer) with its built-in
local assistant, an admin token, and real aiohttp WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import math
import os
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from relay.settings import load_settings
from relay.web.app import create_app
from relay.web.realtime import MEDIA, MediaPlane

ADMIN = "admin-token-for-tests-0123456789"
RECV_TIMEOUT_S = 10.0  # a safety net against hangs, not a performance assertion


def tone(ms: int, *, freq_hz: float = 440.0, rate_hz: int = 24000, amplitude: int = 8000) -> bytes:
    n = rate_hz * ms // 1000
    return array("h", (int(amplitude * math.sin(2 * math.pi * freq_hz * i / rate_hz)) for i in range(n))).tobytes()


def silence(ms: int, rate_hz: int = 24000) -> bytes:
    return bytes(2 * rate_hz * ms // 1000)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def audio_of(events: list[dict[str, Any]], *delta_types: str) -> bytes:
    wanted = delta_types or ("response.audio.delta",)
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] in wanted)


class Conn:
    """A server client: one aiohttp WebSocket to relay's ``GET /v1/realtime``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(event).decode())

    async def append(self, audio: bytes, chunk_bytes: int = 1920) -> None:
        for i in range(0, len(audio), chunk_bytes):
            await self.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(audio[i:i + chunk_bytes]).decode()})

    async def recv(self) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), RECV_TIMEOUT_S)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {msg.type} {self.ws.close_code}")
        ev = orjson.loads(msg.data)
        self.seen.append(ev)
        return ev

    async def until(self, etype: str, **match: Any) -> list[dict[str, Any]]:
        """Events up to and including the first of type ``etype`` (whose fields equal ``match``)."""
        out = []
        while True:
            ev = await self.recv()
            out.append(ev)
            if ev["type"] == etype and all(ev.get(k) == v for k, v in match.items()):
                return out

    async def closed(self) -> tuple[int | None, list[dict[str, Any]]]:
        """Reads to the close: (the close code relay sent, events received before it)."""
        events = []
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), RECV_TIMEOUT_S)
            if msg.type == aiohttp.WSMsgType.CLOSE:
                return msg.data, events
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code, events
            if msg.type == aiohttp.WSMsgType.TEXT:
                events.append(orjson.loads(msg.data))


@dataclass
class Edge:
    server: TestServer
    http: aiohttp.ClientSession
    conns: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def plane(self) -> MediaPlane:
        return self.app[MEDIA]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url("/admin/v1" + path),
                                     headers={"Authorization": f"Bearer {ADMIN}"}, **kwargs) as resp:
            return resp.status, await resp.json()

    async def token(self, workspace_id: str = "default", assistant_id: str | None = None, name: str = "t") -> str:
        body: dict[str, Any] = {"workspace_id": workspace_id, "name": name}
        if assistant_id:
            body["assistant_id"] = assistant_id
        status, doc = await self.admin("POST", "/tokens", json=body)
        assert status == 201, doc
        return doc["token"]

    async def assistant(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("name", "A")
        status, doc = await self.admin("POST", "/assistants", json=fields)
        assert status == 201, doc
        return doc

    async def connect(self, token: str | None, *, via: str = "query", dialect_ga: bool = False,
                      **query: str) -> Conn:
        params = dict(query)
        headers = {}
        if token is not None and via == "query":
            params["token"] = token
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        ws = await self.http.ws_connect(self.url("/v1/realtime"), params=params, headers=headers,
                                        max_msg_size=16 << 20)
        self.conns.append(ws)
        return Conn(ws)

    async def handshake_error(self, token: str | None, *, via: str = "query", **query: str) -> tuple[int, Any, Any]:
        """(status, JSON body, headers) of a refused upgrade."""
        params = dict(query)
        headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
        if token is not None and via == "query":
            params["token"] = token
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.get(self.url("/v1/realtime"), params=params, headers=headers) as resp:
            return resp.status, await resp.json(), resp.headers

    async def wait_idle(self, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.plane.registry):  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.02)


@pytest.fixture
async def edge_factory(tmp_path) -> AsyncIterator[Callable[..., Awaitable[Edge]]]:
    edges: list[Edge] = []

    async def start(**overrides: Any) -> Edge:
        values: dict[str, Any] = {"data_dir": str(tmp_path / f"relay{len(edges)}"), "admin_token": ADMIN,
                                  "ice_host_addresses": ["127.0.0.1"], "tool_allow_private": True,
                                  "log_format": "text"}
        values.update(overrides)
        server = TestServer(create_app(load_settings(environ={}, **values)), host="127.0.0.1")
        await server.start_server()
        edge = Edge(server=server, http=aiohttp.ClientSession())
        edges.append(edge)
        return edge

    yield start
    for edge in edges:
        for ws in edge.conns:
            await ws.close()
        await edge.http.close()
        await edge.server.close()


@pytest.fixture
async def edge(edge_factory) -> AsyncIterator[Edge]:
    """A relay with defaults, and a leak check: after the test no call, task or socket is left."""
    e = await edge_factory()
    await asyncio.sleep(0)
    tasks_before = len(asyncio.all_tasks())
    yield e
    for ws in e.conns:
        await ws.close()
    await e.wait_idle()
    await e.http.close()  # ends the server's keep-alive connection tasks too
    await asyncio.sleep(0.1)
    assert len(e.plane.registry) == 0
    leftover = [t for t in asyncio.all_tasks() if not t.done()]
    assert len(leftover) <= tasks_before, [t.get_name() for t in leftover]
    assert not [t for t in leftover if t.get_name().startswith(("ws-", "tool ", "recycle ", "upstream-writer"))]
