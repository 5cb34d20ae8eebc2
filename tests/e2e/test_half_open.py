"""Offers that are never connected are bounded on their own and per address, whatever client ids
they carry (issue: each held a slot for 20 s, ~10 offers/s kept a worker full; in demo mode a new
X-Client-Id per request bypassed the per-client cap)."""

from __future__ import annotations

import uuid

import orjson

from tests.e2e.test_errors import post
from tests.media.conftest import golden_offer


async def offer_from(relay, address: str) -> tuple[int, dict | str]:
    status, ctype, body = await post(relay, golden_offer("chrome"), **{"X-Client-Id": str(uuid.uuid4()),
                                                                       "X-Forwarded-For": address})
    return status, orjson.loads(body) if ctype == "application/json" else body.decode()


async def test_unconnected_offers_are_capped_per_address_and_others_still_get_calls(relay_factory):
    relay = await relay_factory(trust_forwarded_for=True, max_half_open_calls_per_address=3,
                                max_half_open_calls=5, ice_connect_timeout_s=30)
    for _ in range(3):  # a new client id each time: the per-client cap does not see them
        assert (await offer_from(relay, "198.51.100.7"))[0] == 201
    status, body = await offer_from(relay, "198.51.100.7")
    assert status == 429 and body["error"]["code"] == "too_many_pending_calls"
    assert relay.plane.registry.half_open == 3
    assert relay.plane.metrics.setup_failures.get("too_many_pending_calls") == 1  # relay_call_setup_failures_total
    # another address still gets calls, up to the worker's half-open bound
    assert (await offer_from(relay, "203.0.113.9"))[0] == 201
    # a device that connects stops being half-open
    events: list[dict] = []
    device = relay.device()
    await device.connect(on_event=events.append)
    assert relay.plane.registry.half_open == 4
    status, body = await offer_from(relay, "192.0.2.1")
    assert status == 201
    status, body = await offer_from(relay, "192.0.2.2")  # 5 half-open on the worker
    assert status == 503 and body["error"]["code"] == "capacity_exceeded"
    assert device.connected
    await device.hangup()
    for call in relay.plane.registry.calls():
        call.end("test_cleanup")
    await relay.wait_idle()
    assert relay.plane.registry.half_open == 0


async def test_a_never_connected_offer_frees_its_slot_at_the_connect_timeout(relay_factory):
    relay = await relay_factory(trust_forwarded_for=True, max_half_open_calls_per_address=1,
                                ice_connect_timeout_s=1.0)
    assert (await offer_from(relay, "198.51.100.7"))[0] == 201
    call = relay.plane.registry.calls()[0]
    assert (await offer_from(relay, "198.51.100.7"))[0] == 429
    await call.wait_closed()
    assert call.end_reason == "ice_timeout"
    assert (await offer_from(relay, "198.51.100.7"))[0] == 201
    for c in relay.plane.registry.calls():
        c.end("test_cleanup")
    await relay.wait_idle()
