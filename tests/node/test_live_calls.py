"""The fleet's live-call registry (relay/store/live_calls.py) on SQLite and PostgreSQL: caps that hold
under concurrent admissions from separate connections (as from separate workers and nodes), leases,
operator end requests, and one round trip per admission."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from relay.store import live_calls
from relay.store.db import Database
from relay.store.live_calls import CapReached
from tests.foundation.test_setup_round_trips import RoundTrips, trips  # noqa: F401 (fixture)


def _admit(db: Database, client: str = "c1", workspace: str = "w1", *, holder: str = "n1:1", now: float = 1000.0,
           lease_s: float = 30.0, client_cap: int = 2, workspace_cap: int = 0, call_id: str | None = None):
    return live_calls.admit(db, call_id=call_id or "call_" + uuid.uuid4().hex, client_id=client,
                            workspace_id=workspace, node=holder.split(":")[0], worker=0, holder=holder,
                            lease_s=lease_s, client_cap=client_cap, workspace_cap=workspace_cap, now=now)


async def test_caps_leases_and_end_requests(db: Database) -> None:
    await live_calls.ensure_schema(db)
    await _admit(db, call_id="a")
    await _admit(db, call_id="b", holder="n2:7")  # another node: same fleet-wide count
    with pytest.raises(CapReached) as refused:
        await _admit(db, call_id="c")
    assert refused.value.which == "client"
    await _admit(db, "other", call_id="d")  # another client is not affected
    with pytest.raises(CapReached) as refused:
        await _admit(db, "third", call_id="e", workspace_cap=3)
    assert refused.value.which == "workspace"
    listed = await live_calls.list_live(db, now=1000.0)
    assert [(c.call_id, c.node) for c in listed] == [("a", "n1"), ("b", "n2"), ("d", "n1")]
    # an operator asks to end b: its holder learns it at its next renewal, nobody else does
    assert await live_calls.request_end(db, "b") and not await live_calls.request_end(db, "nope")
    assert await live_calls.renew(db, "n1:1", 30.0, now=1010.0) == []
    assert await live_calls.renew(db, "n2:7", 30.0, now=1010.0) == ["b"]
    # n2 dies (no more renewals): past its lease its call stops counting, c1 gets the slot back
    await live_calls.renew(db, "n1:1", 30.0, now=1035.0)
    assert [c.call_id for c in await live_calls.list_live(db, now=1045.0)] == ["a", "d"]
    await _admit(db, call_id="f", now=1045.0)
    await live_calls.release(db, "a")
    assert [c.call_id for c in await live_calls.list_live(db, now=1046.0, client_id="c1")] == ["f"]
    assert await live_calls.purge_expired(db, now=1101.0, grace_s=60.0) == 1  # only b: its lease ended at 1040


async def test_admission_is_one_round_trip(db: Database, trips: RoundTrips) -> None:  # noqa: F811
    await live_calls.ensure_schema(db)
    with trips.counting():
        await _admit(db, call_id="x", workspace_cap=5)
    assert trips.count == 1


async def test_concurrent_admissions_never_pass_the_cap(db: Database, tmp_path, postgres_url) -> None:
    """Eight connections (as eight workers on several nodes) race for one client's three slots."""
    await live_calls.ensure_schema(db)
    others = [await Database.connect(db.url) for _ in range(7)]
    try:
        for round_ in range(3):
            client = f"racer{round_}"
            results = await asyncio.gather(*(_admit(conn, client, client_cap=3, workspace_cap=0)
                                             for conn in [db, *others] for _ in range(2)), return_exceptions=True)
            assert all(r is None or isinstance(r, CapReached) for r in results), results
            assert sum(r is None for r in results) == 3
            assert len(await live_calls.list_live(db, client_id=client, now=1000.0)) == 3
    finally:
        for conn in others:
            await conn.close()
