"""Database round trips on the call set-up path, counted on SQLite and PostgreSQL.

Every round trip on the set-up path waits for the event loop's next turn (on SQLite also a hop
to aiosqlite's worker thread and back), which under load costs milliseconds each. The counts
asserted here are the ones docs/ops.md ("Call set-up: database round trips") states.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import aiosqlite
import asyncpg
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from relay.store import assistants, clients, usage, workspaces
from relay.store.db import Database

from .helpers import device_headers, new_secret

FLEET_TABLES = re.compile(r"auth_failures|auth_known|relay_auth_attempt|live_calls|relay_admit_call")


class RoundTrips:
    def __init__(self) -> None:
        self.count = 0
        self.statements: list[str] = []

    @contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        self.count = 0
        self.statements = []
        yield self

    @property
    def fleet(self) -> int:
        """Round trips for state shared by workers and nodes (throttle, caps, live-call registry)."""
        return sum(1 for sql in self.statements if FLEET_TABLES.search(sql))


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    """Counts aiosqlite thread hops and asyncpg queries (incl. a pool's reset query on release)."""
    rt = RoundTrips()

    def wrap(cls: type, name: str) -> None:
        orig = getattr(cls, name)

        async def counted(self, *args, **kwargs):
            rt.count += 1
            rt.statements.append(next((a for a in args if isinstance(a, str)), ""))
            return await orig(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, counted)

    wrap(aiosqlite.Connection, "_execute")
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        wrap(asyncpg.connection.Connection, name)
    return rt


async def test_each_statement_is_one_round_trip(db: Database, trips: RoundTrips) -> None:
    with trips.counting():
        assert await db.fetchone("SELECT id FROM workspaces WHERE id = ?", "default") == {"id": "default"}
    assert trips.count == 1
    with trips.counting():
        assert await db.execute("UPDATE workspaces SET name = ? WHERE id = ?", "D", "default") == 1
    assert trips.count == 1
    with trips.counting():
        assert len(await db.fetchall("SELECT id FROM workspaces")) == 1
    assert trips.count == 1
    # the counter sees real round trips: a transaction is BEGIN + statement + COMMIT
    with trips.counting():
        async with db.transaction() as tx:
            await tx.execute("UPDATE workspaces SET name = ? WHERE id = ?", "E", "default")
    assert trips.count == 3
    assert (await workspaces.get(db, "default")).name == "E"


async def test_usage_row_is_one_round_trip(db: Database, trips: RoundTrips) -> None:
    with trips.counting():
        row = await usage.record_usage(db, session_id="call_x", client_id="c", started_at=10.0, ended_at=12.5,
                                       input_tokens=3, output_audio_s=1.5, demo=True)
    assert trips.count == 1
    assert (await usage.list_usage(db, client_id="c")) == [row]


@pytest.fixture
async def app_on(db: Database, make_app):
    return await make_app(db=db, demo_mode=True, ice_connect_timeout_s=1, shutdown_timeout_s=1)


async def _offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_setup_round_trips(app_on, db: Database, trips: RoundTrips) -> None:
    """Demo device: 1 (session row) + 1 (live-call admission). Enrolled device: 2 (auth + session row)
    + 2 (auth + live-call admission: the fleet-wide caps and registry, relay/store/live_calls.py)."""
    mine = await assistants.create(db, "default", "Mine", voice="verse")
    cid = (await clients.create(db, "default", assistant_id=mine.id)).id
    secret = new_secret()
    enrolled = device_headers(cid, secret)
    resp = await app_on.post("/v1/realtime/sessions", json={}, headers=enrolled)  # TOFU enrolment (not counted)
    assert resp.status == 200

    cases = [(device_headers(str(uuid.uuid4()), X_Demo_Mode="true"), 1, 1), (enrolled, 2, 2)]
    for headers, session_trips, sdp_trips in cases:
        with trips.counting():
            resp = await app_on.post("/v1/realtime/sessions", json={"modalities": ["audio"]}, headers=headers)
            assert resp.status == 200, await resp.text()
        assert trips.count == session_trips, headers
        assert re.fullmatch(r"auth;dur=\d+\.\d\d, db;dur=\d+\.\d\d", resp.headers["Server-Timing"])
        session_id = (await resp.json())["id"]
        assert (await db.fetchone("SELECT modalities FROM sessions WHERE id = ?", session_id)) == \
            {"modalities": '["audio"]'}

        pc, offer = await _offer()
        try:
            with trips.counting():
                resp = await app_on.post("/v1/realtime", data=offer,
                                         headers={**headers, "Content-Type": "application/sdp"})
                assert resp.status == 201, await resp.text()
            assert trips.count == sdp_trips, headers
            assert re.fullmatch(r"auth;dur=\d+\.\d\d, answer;dur=\d+\.\d\d", resp.headers["Server-Timing"])
        finally:
            await pc.close()

    # the joined lookup resolves the same assistant as before (the client's own)
    from aiohttp.test_utils import make_mocked_request

    from relay.web.authn import authenticate

    req = make_mocked_request("POST", "/v1/realtime", headers=enrolled, app=app_on.server.app)
    assert (await authenticate(req)).assistant.id == mine.id


async def test_wrong_secret_is_recorded_for_the_fleet(app_on, db: Database, trips: RoundTrips) -> None:
    """A wrong secret costs the lookup plus recording the failure where every worker and node counts it
    (relay/store/auth_failures.py: one statement on PostgreSQL, a read and an INSERT on SQLite)."""
    cid = (await clients.create(db, "default")).id
    secret = new_secret()
    assert (await app_on.post("/v1/realtime/sessions", json={}, headers=device_headers(cid, secret))).status == 200
    with trips.counting():
        resp = await app_on.post("/v1/realtime/sessions", json={}, headers=device_headers(cid, new_secret()))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_secret"
    assert trips.count == (2 if db.dialect == "postgresql" else 3)
    assert len(await db.fetchall("SELECT at FROM auth_failures")) == 2  # the client id and the address
    await clients.set_status(db, cid, "disabled")  # revocation: the very next request sees it
    resp = await app_on.post("/v1/realtime/sessions", json={}, headers=device_headers(cid, secret))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "client_not_found"


async def _setup(app_on, headers: dict[str, str]) -> None:
    resp = await app_on.post("/v1/realtime/sessions", json={}, headers=headers)
    assert resp.status == 200, await resp.text()
    pc, offer = await _offer()
    try:
        resp = await app_on.post("/v1/realtime", data=offer, headers={**headers, "Content-Type": "application/sdp"})
        assert resp.status == 201, await resp.text()
    finally:
        await pc.close()


async def test_fleet_state_costs_one_round_trip_per_setup(app_on, db: Database, trips: RoundTrips) -> None:
    """Throttle + caps + live-call registry, the state shared by workers and nodes: one round trip per
    set-up (the admission) once the device's address is known to the worker; 2 the first time a worker
    sees it (asking the store whether the pair is known; 3 on SQLite); 3 for a device's very first call from an
    address (its attempt charged up front, then given back and the pair stored; 4 on SQLite)."""
    from relay.web.authn import THROTTLE

    cid = (await clients.create(db, "default")).id
    headers = device_headers(cid, new_secret())
    with trips.counting():
        await _setup(app_on, headers)  # TOFU enrolment from a new address
    # PostgreSQL: charge, give back + store the pair (one statement), admit; SQLite: give back and store are 2
    assert trips.fleet == (3 if db.dialect == "postgresql" else 4), "\n".join(trips.statements)
    for _ in range(2):
        with trips.counting():
            await _setup(app_on, headers)
        assert trips.fleet == 1, trips.statements  # the live-call admission
    app_on.server.app[THROTTLE]._known.clear()  # as a sibling worker (or another node) sees it
    with trips.counting():
        await _setup(app_on, headers)
    assert trips.fleet == (2 if db.dialect == "postgresql" else 3), trips.statements  # SQLite: INSERT, then known?
    with trips.counting():
        await _setup(app_on, headers)
    assert trips.fleet == 1, trips.statements


class CountingLock(asyncio.Lock):
    acquired = 0

    async def acquire(self) -> bool:
        CountingLock.acquired += 1
        return await super().acquire()


async def test_sqlite_statements_skip_the_lock_but_never_enter_a_transaction(tmp_path) -> None:
    db = await Database.connect(f"sqlite:///{tmp_path / 's.db'}")
    try:
        await db.migrate()
        db._sqlite_lock = CountingLock()
        CountingLock.acquired = 0
        insert = "INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)"
        # concurrent single statements: queued FIFO on aiosqlite's thread, no lock hand-over between them
        await asyncio.gather(*(db.execute(insert, f"w{i}", "W", 1.0) for i in range(30)),
                             *(db.fetchone("SELECT id FROM workspaces WHERE id = ?", "default") for _ in range(30)))
        assert CountingLock.acquired == 0
        assert len(await db.fetchall("SELECT id FROM workspaces WHERE name = 'W'")) == 30
        # while a transaction is open, a single statement waits for it (else a ROLLBACK would undo it)
        outside: asyncio.Task | None = None
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute(insert, "inside", "T", 1.0)
                outside = asyncio.create_task(db.execute(insert, "outside", "T", 1.0))
                await asyncio.sleep(0.05)
                assert not outside.done()
                raise RuntimeError("roll back")
        assert outside is not None and await outside == 1
        assert [r["id"] for r in await db.fetchall("SELECT id FROM workspaces WHERE name = 'T'")] == ["outside"]
    finally:
        await db.close()


async def _in_transaction(db: Database) -> bool:
    return await db._sqlite._execute(lambda raw: raw.in_transaction, db._sqlite._conn)


async def test_sqlite_transaction_cancelled_before_its_begin_ran_leaves_none_open(tmp_path) -> None:
    """A cancelled BEGIN still runs on aiosqlite's thread: it must not leave a transaction open behind the lock."""
    db = await Database.connect(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        await db.migrate()
        busy, release = threading.Event(), threading.Event()

        def hold() -> None:  # keeps aiosqlite's thread busy so BEGIN stays queued
            busy.set()
            assert release.wait(5)

        blocker = asyncio.ensure_future(db._sqlite._execute(hold))
        assert await asyncio.to_thread(busy.wait, 5)
        insert = "INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)"

        async def write() -> None:
            async with db.transaction() as tx:
                await tx.execute(insert, "never", "C", 1.0)

        task = asyncio.ensure_future(write())
        await asyncio.sleep(0)  # the task took the lock and queued BEGIN IMMEDIATE
        assert db._sqlite_tx_users == 1
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await blocker
        assert not await _in_transaction(db)
        # the connection is usable: a statement commits, a new transaction begins and commits
        await db.execute(insert, "plain", "C", 1.0)
        async with db.transaction() as tx:
            await tx.execute(insert, "tx", "C", 1.0)
        assert not await _in_transaction(db)
        assert sorted(r["id"] for r in await db.fetchall("SELECT id FROM workspaces WHERE name = 'C'")) == \
            ["plain", "tx"]
    finally:
        await db.close()


async def test_joined_auth_lookup_equals_the_separate_lookups(db: Database) -> None:
    """relay.store.device_auth names every column itself: it must build exactly what the repositories'
    ``SELECT *`` lookups build (a column added to a table and read by a ``_row`` must be added there too)."""
    from relay.store import device_auth

    async def separate(cid: str):
        client = await clients.get(db, cid)
        workspace = await workspaces.find(db, client.workspace_id)
        assistant = None
        for aid in (client.assistant_id, workspace.default_assistant_id if workspace else None):
            if aid and (assistant := await assistants.find(db, aid)) is not None:
                break
        return device_auth.AuthContext(client=client, workspace=workspace, assistant=assistant)

    ws, _ = await workspaces.create(db, "Joined", with_key=True)
    own = await assistants.create(db, ws.id, "Own", voice="verse")
    fallback = await assistants.create(db, ws.id, "Default", voice="alloy")
    with_own = (await clients.create(db, ws.id, assistant_id=own.id)).id
    without = (await clients.create(db, ws.id)).id
    assert await device_auth.find(db, with_own.upper()) == await separate(with_own)
    assert (await device_auth.find(db, without)).assistant is None  # the built-in default
    assert await device_auth.find(db, without) == await separate(without)
    await workspaces.update(db, ws.id, default_assistant_id=fallback.id)
    for cid in (with_own, without):
        assert await device_auth.find(db, cid) == await separate(cid)
    assert (await device_auth.find(db, without)).assistant.id == fallback.id
    assert await device_auth.find(db, str(uuid.uuid4())) is None
