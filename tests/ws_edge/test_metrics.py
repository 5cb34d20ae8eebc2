"""WebSocket-edge calls in the call metrics of ``GET /metrics`` (parsed by a strict exposition parser):
started, live, ended by reason, together with WebRTC calls."""

from __future__ import annotations

from tests.ops.promtext import parse

from .conftest import ADMIN


async def _scrape(edge) -> dict:
    async with edge.http.get(edge.url("/metrics"), headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200
        return parse(await resp.text())


async def test_websocket_calls_are_counted_started_live_and_ended_by_reason(edge_factory) -> None:
    edge = await edge_factory(max_call_s=2)
    token = await edge.token()
    before = await _scrape(edge)
    assert before["relay_calls_started_total"].value() == 0

    first = await edge.connect(token)
    await first.until("session.updated")
    second = await edge.connect(token)
    await second.until("session.updated")
    live = await _scrape(edge)
    assert live["relay_calls_started_total"].value() == 2
    assert live["relay_live_calls"].value() == 2

    await first.ws.close()  # the client hangs up
    code, _ = await second.closed()  # the other one reaches max_call_s
    assert code == 1000
    await edge.wait_idle()
    after = await _scrape(edge)
    assert after["relay_live_calls"].value() == 0
    assert after["relay_calls_ended_total"].value(reason="device_closed") == 1  # as for WebRTC devices
    assert after["relay_calls_ended_total"].value(reason="max_call_length") == 1
