"""The store against SQLite and a real PostgreSQL: migrations, repositories, transactions."""

from __future__ import annotations

import pytest

from relay.store import assistants, clients, sessions, usage, workspaces
from relay.store.db import Database, DatabaseError, migration_files, qmark_to_dollar, split_statements
from relay.store.errors import Conflict, NotFound


async def test_migrations_applied_once(db: Database) -> None:
    rows = await db.fetchall("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [v for v, _n, _s in migration_files()]
    assert await db.migrate() == []  # idempotent
    ws = await workspaces.get(db, "default")
    assert ws.name == "Default"


async def test_transaction_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)", "w-tx", "x", 1.0)
            assert await tx.fetchone("SELECT id FROM workspaces WHERE id = ?", "w-tx") is not None
            raise RuntimeError("boom")
    assert await db.fetchone("SELECT id FROM workspaces WHERE id = ?", "w-tx") is None
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)", "w-tx", "x", 1.0)
    assert await db.fetchone("SELECT id FROM workspaces WHERE id = ?", "w-tx") is not None


async def test_times_keep_subsecond_precision(db: Database) -> None:
    await db.execute("INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)", "w-t", "x", 1795243207.125)
    row = await db.fetchone("SELECT created_at FROM workspaces WHERE id = ?", "w-t")
    assert row is not None and row["created_at"] == 1795243207.125


async def test_workspace_key_lookup(db: Database) -> None:
    ws, key = await workspaces.create(db, "Acme", allow_self_enrol=True, with_key=True)
    assert key and key.startswith("rwk_") and ws.has_key and ws.allow_self_enrol
    row = await db.fetchone("SELECT key_hash FROM workspaces WHERE id = ?", ws.id)
    assert row is not None and key not in row["key_hash"]  # only the digest is stored
    assert (await workspaces.by_key(db, key)).id == ws.id  # type: ignore[union-attr]
    assert await workspaces.by_key(db, key + "x") is None
    new = await workspaces.rotate_key(db, ws.id)
    assert await workspaces.by_key(db, key) is None
    assert (await workspaces.by_key(db, new)).id == ws.id  # type: ignore[union-attr]
    ws2 = await workspaces.update(db, ws.id, allow_secretless=True, settings={"a": 1})
    assert ws2.allow_secretless and ws2.settings == {"a": 1}


async def test_assistant_roundtrip_and_validation(db: Database) -> None:
    tools = [{"name": "lookup", "description": "d", "side": "server", "webhook_url": "https://example.invalid/h",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
             {"name": "blink", "side": "client"}]
    a = await assistants.create(db, "default", "Helper", upstream_url="wss://up.invalid/v1/realtime", api_key="sk-x",
                                provider="azure", voice="verse", tools=tools, dialect="ga", allow_g711=False,
                                transcription={"model": "whisper-1"}, device_update_allow=["turn_detection.threshold"])
    got = await assistants.get(db, a.id)
    assert got == a
    assert got.provider == "azure" and got.dialect == "ga" and not got.allow_g711 and got.api_key == "sk-x"
    assert [t.side for t in got.tools] == ["server", "client"]
    names = [t.name for t in got.all_tools]
    assert names[:2] == ["lookup", "blink"] and {"adjust_device_volume", "set_device_volume", "quiet_device",
                                                 "stop_audio"} <= set(names)
    assert "api_key" not in got.public_json() and got.public_json()["has_api_key"] is True
    local = await assistants.create(db, "default", "Local")
    assert local.provider == "local" and local.model == "relay-echo"
    for bad in ({"provider": "x"}, {"dialect": "v2"}, {"tools": [{"name": "t", "side": "server"}]},
                {"tools": [{"name": "t"}, {"name": "t"}]}, {"upstream_url": "http://x"},
                {"device_update_allow": ["api_key"]}, {"device_tools": "yes"}):
        with pytest.raises(ValueError):
            await assistants.create(db, "default", "Bad", **bad)
    updated = await assistants.update(db, a.id, instructions="Be brief.", device_tools=False)
    assert updated.instructions == "Be brief." and updated.all_tools == updated.tools


async def test_clients_tofu_and_reset(db: Database) -> None:
    c = await clients.create(db, "default", name="kitchen")
    assert clients.is_uuid(c.id) and not c.enrolled and c.status == "active"
    secret = "s" * 40
    assert await clients.enrol_secret(db, c.id, secret, now=10.0)
    assert not await clients.enrol_secret(db, c.id, "t" * 40, now=11.0)  # first one wins
    c = await clients.get(db, c.id)
    assert c.enrolled and c.enrolled_at == 10.0 and secret not in (c.secret_hash or "")
    assert clients.secret_matches(c, secret) and not clients.secret_matches(c, "t" * 40)
    c = await clients.reset_secret(db, c.id)
    assert not c.enrolled and not clients.secret_matches(c, secret)
    assert await clients.enrol_secret(db, c.id, "t" * 40, now=12.0)
    assert (await clients.set_status(db, c.id, "disabled")).status == "disabled"
    with pytest.raises(Conflict):
        await clients.create(db, "default", client_id=c.id)
    with pytest.raises(ValueError):
        await clients.create(db, "default", client_id="not-a-uuid")
    with pytest.raises(NotFound):
        await clients.create(db, "nope")
    with pytest.raises(NotFound):
        await clients.reset_secret(db, "00000000-0000-0000-0000-000000000000")


async def test_client_assistant_must_share_workspace(db: Database) -> None:
    ws, _ = await workspaces.create(db, "Other")
    foreign = await assistants.create(db, ws.id, "Foreign")
    with pytest.raises(Conflict):
        await clients.create(db, "default", assistant_id=foreign.id)
    c = await clients.create(db, ws.id, assistant_id=foreign.id)
    await assistants.delete(db, foreign.id)
    assert (await clients.get(db, c.id)).assistant_id is None  # ON DELETE SET NULL


async def test_sessions_and_usage(db: Database) -> None:
    c = await clients.create(db, "default")
    s = await sessions.create(db, client_id=c.id, workspace_id="default", assistant_id="default", demo=False,
                              modalities=["audio"], now=100.0, ttl_s=60,
                              ice_servers=[{"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "c"}])
    assert s.id.startswith("session_") and s.expires_at == 160.0
    assert s.ice_servers == [{"urls": ["turn:127.0.0.1:3478"], "username": "u"}]  # credential never stored
    assert [x.id for x in await sessions.list_for_client(db, c.id)] == [s.id]
    row = await usage.record_usage(db, session_id=s.id, client_id=c.id, started_at=100.0, ended_at=130.5,
                                   input_tokens=10, output_tokens=20, input_audio_s=12.5, output_audio_s=8.0)
    assert row.output_tokens == 20 and row.input_audio_s == 12.5
    totals = await usage.totals(db, c.id)
    assert totals == {"calls": 1.0, "input_tokens": 10.0, "output_tokens": 20.0, "seconds": 30.5}
    with pytest.raises(ValueError):
        await usage.record_usage(db, session_id=s.id, client_id=c.id, started_at=5, ended_at=1)


def test_qmark_rewrite_skips_literals() -> None:
    assert qmark_to_dollar("SELECT '?' AS q, x FROM t WHERE a = ? AND b = ?") == \
        "SELECT '?' AS q, x FROM t WHERE a = $1 AND b = $2"
    assert split_statements("CREATE TABLE a (x TEXT); -- c; d\nCREATE TABLE b (y TEXT);") == \
        ["CREATE TABLE a (x TEXT)", "CREATE TABLE b (y TEXT)"]


async def test_bad_urls_refused(tmp_path) -> None:
    with pytest.raises(DatabaseError):
        await Database.connect("mysql://x/y")
    with pytest.raises(DatabaseError):
        await Database.connect("postgresql://u:pw@127.0.0.1:1/none")


async def test_purge_expired_sessions(db: Database) -> None:
    for sid, expires in (("session_old", 100.0), ("session_new", 5000.0)):
        await sessions.create(db, client_id=None, workspace_id=None, assistant_id=None, demo=True, modalities=["audio"],
                              ice_servers=[], now=expires - 60, ttl_s=60, session_id=sid)
    assert await sessions.purge_expired(db, now=1100.0, keep_s=500) == 1
    with pytest.raises(NotFound):
        await sessions.get(db, "session_old")
    assert (await sessions.get(db, "session_new")).expires_at == 5000.0
