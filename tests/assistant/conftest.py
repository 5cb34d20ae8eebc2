"""A local assistant per test on 127.0.0.1, and a client factory."""

from __future__ import annotations

import aiohttp
import pytest
from assistant_helpers import Conn

from relay.assistant import start_local_assistant


@pytest.fixture
async def assistant_url():
    runner, url = await start_local_assistant("127.0.0.1", 0, speedup=8.0)
    yield url
    await runner.cleanup()


@pytest.fixture
async def connect(assistant_url):
    session = aiohttp.ClientSession()
    conns = []

    async def _connect(model: str = "relay-echo", *, beta: bool = True, query: str = "", url: str | None = None) -> Conn:
        headers = {"Authorization": "Bearer anything"}
        if beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        ws = await session.ws_connect(f"{url or assistant_url}?model={model}{query}", headers=headers)
        conn = Conn(ws)
        conns.append(conn)
        first = await conn.recv()
        assert first["type"] == "session.created"
        return conn

    yield _connect
    for c in conns:
        await c.ws.close()
    await session.close()
