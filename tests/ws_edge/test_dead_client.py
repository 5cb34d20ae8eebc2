"""A WebSocket client that freezes (no frame, no pong) is found within ws_heartbeat_s * 1.5 and
billed to its last frame (issue: a frozen client was held 46.1 s)."""

from __future__ import annotations

import asyncio
import time

from .conftest import types


async def test_frozen_client_ends_client_timeout_billed_to_its_last_frame(edge_factory) -> None:
    heartbeat_s = 1.0
    edge = await edge_factory(ws_heartbeat_s=heartbeat_s)
    conn = await edge.connect(await edge.token())
    assert "session.updated" in types(await conn.until("session.updated"))
    call = edge.plane.registry.calls()[0]
    frozen_at = time.time()
    # the client stops reading (so it never answers relay's pings) and sends nothing
    await asyncio.wait_for(call.wait_closed(), 4 * heartbeat_s + 3)  # before: 30 s heartbeat + 15 s
    assert call.end_reason == "client_timeout"
    assert call.usage.started_at < call.usage.ended_at <= frozen_at + 0.5
    print(f"\nbilled {call.usage.ended_at - frozen_at:+.3f} s from the client's last frame")
    await edge.wait_idle()


async def test_a_client_answering_pings_is_kept(edge_factory) -> None:
    edge = await edge_factory(ws_heartbeat_s=0.5)
    conn = await edge.connect(await edge.token())
    await conn.until("session.updated")
    call = edge.plane.registry.calls()[0]
    # an idle client whose library answers pings (aiohttp does while receive() runs)
    try:
        await asyncio.wait_for(conn.ws.receive(), 3.0)
    except TimeoutError:
        pass
    assert call.end_reason is None
    await conn.ws.close()
    await edge.wait_idle()
