"""The live-call registry wired into the media plane: two relay apps on one database (as two workers
or nodes), real calls from the device SDK. The per-client cap holds across them, the registry lists
each call with its holder, and an operator's end request reaches the worker that holds the call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from relay.client import RelayClient, RelayError
from relay.media import ice
from relay.settings import load_settings
from relay.store import live_calls
from relay.store.db import Database
from relay.web.app import create_app

pytestmark = pytest.mark.slow
LOOPBACK = ["127.0.0.1"]


@pytest.fixture
async def two_apps(tmp_path: Path) -> AsyncIterator[tuple[list[str], Database]]:
    ice.configure_host_addresses(LOOPBACK)
    db = await Database.connect(f"sqlite:///{tmp_path / 'fleet.db'}")
    await db.migrate()
    servers = []
    for name in ("node-a", "node-b"):
        settings = load_settings(environ={}, data_dir=str(tmp_path / name), demo_mode=True, ice_host_addresses=LOOPBACK,
                                 log_format="text", max_calls_per_client=1, call_lease_s=0.6, node_name=name)
        server = TestServer(create_app(settings, db=db), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
    try:
        yield [str(s.make_url("")).rstrip("/") for s in servers], db
    finally:
        for server in servers:
            await server.close()
        await db.close()
        ice.configure_host_addresses([])


async def test_cap_is_fleet_wide_and_operator_end_reaches_the_holder(two_apps) -> None:
    (a, b), db = two_apps
    client_id = "kitchen-" + uuid.uuid4().hex[:8]
    first = RelayClient(a, client_id, demo=True, host_addresses=LOOPBACK)
    second = RelayClient(b, client_id, demo=True, host_addresses=LOOPBACK)
    other = RelayClient(b, "hall-" + uuid.uuid4().hex[:8], demo=True, host_addresses=LOOPBACK)
    try:
        await first.connect()
        with pytest.raises(RelayError) as refused:  # the same client on the other node: its one call is live
            await second.connect()
        assert refused.value.status == 429 and refused.value.code == "too_many_calls"
        await other.connect()
        listed = {c.client_id: c for c in await live_calls.list_live(db)}
        assert listed[client_id].node == "node-a" and listed[other.client_id].node == "node-b"
        # an operator ends the first call from anywhere: node-a's next renewal ends it, the device is told why
        assert await live_calls.request_end(db, listed[client_id].call_id)
        error = await first.next_event("error", timeout_s=10)
        assert error["error"]["code"] == "call_ended_by_operator"
        async with asyncio.timeout(10):
            while any(c.client_id == client_id for c in await live_calls.list_live(db)):  # noqa: ASYNC110 - polling the store
                await asyncio.sleep(0.1)
        third = RelayClient(b, client_id, demo=True, host_addresses=LOOPBACK)
        await third.connect()  # the slot is free fleet-wide again
        await third.hangup()
    finally:
        for device in (first, second, other):
            await device.hangup()


async def test_registry_unavailable_is_a_503_not_a_500(two_apps) -> None:
    (a, _b), db = two_apps
    await db.execute("DROP TABLE live_calls")  # the database answers, the registry does not
    device = RelayClient(a, "porch-" + uuid.uuid4().hex[:8], demo=True, host_addresses=LOOPBACK)
    try:
        with pytest.raises(RelayError) as refused:
            await device.connect()
        assert refused.value.status == 503 and refused.value.code == "unavailable"
    finally:
        await device.hangup()
