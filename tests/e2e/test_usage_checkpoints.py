"""Usage is checkpointed while calls run, so a crash keeps it (issue: kill -9 with 24 live calls,
restart: 0 of 24 usage rows). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from relay.client import RelayClient
from relay.store import usage
from relay.store.db import Database
from relay.web import keys
from tests.conftest import free_port


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():  # noqa: ASYNC110 -- polling the database
            await asyncio.sleep(0.05)


async def test_upsert_keeps_one_row_per_call(db: Database) -> None:
    first = await usage.record_usage(db, session_id="call_a", client_id="c", started_at=100.0, ended_at=110.0,
                                     input_tokens=1)
    await usage.record_usage_many(db, [usage.usage_row(session_id="call_a", client_id="c", started_at=100.0,
                                                       ended_at=120.0, input_tokens=5, output_audio_s=3.0),
                                       usage.usage_row(session_id="call_b", client_id="c", started_at=100.0,
                                                       ended_at=101.0)])
    rows = {r.session_id: r for r in await usage.list_usage(db, client_id="c")}
    assert set(rows) == {"call_a", "call_b"}
    assert rows["call_a"].id == first.id and rows["call_a"].ended_at == 120.0
    assert rows["call_a"].input_tokens == 5 and rows["call_a"].output_audio_s == 3.0
    assert (await usage.totals(db, "c"))["calls"] == 2.0


async def test_live_calls_are_checkpointed_and_the_end_overwrites_the_checkpoint(relay_factory):
    await _checkpoint_case(await relay_factory(usage_checkpoint_s=0.3), "sqlite")


async def test_live_calls_are_checkpointed_on_postgresql(relay_factory, pg_database_url):
    await _checkpoint_case(await relay_factory(usage_checkpoint_s=0.3, database_url=pg_database_url), "postgresql")


async def _checkpoint_case(relay, backend: str) -> None:
    db = relay.app[keys.DB]
    assert db.dialect == backend
    device = relay.device()
    await device.connect()
    call = relay.plane.registry.calls()[0]

    async def checkpointed() -> bool:
        rows = await usage.list_usage(db, client_id=device.client_id)
        return bool(rows) and rows[0].ended_at > rows[0].started_at

    await wait_until(checkpointed)
    assert call.end_reason is None  # written while the call runs
    checkpoint = (await usage.list_usage(db, client_id=device.client_id))[0]
    assert checkpoint.session_id == call.id and checkpoint.input_audio_s > 0  # the device's silence counts
    await asyncio.sleep(0.7)
    await device.hangup()
    await call.wait_closed()
    rows = await usage.list_usage(db, client_id=device.client_id)
    assert len(rows) == 1 and rows[0].ended_at == call.usage.ended_at >= checkpoint.ended_at
    await relay.wait_idle()


async def _serve(tmp_path, port: int, database_url: str = ""):
    env = {**os.environ, "RELAY_PORT": str(port), "RELAY_DATA_DIR": str(tmp_path / "data"),
           "RELAY_DEMO_MODE": "true", "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1", "RELAY_LOG_FORMAT": "json",
           "RELAY_USAGE_CHECKPOINT_S": "0.5", "RELAY_MAX_CALLS_PER_CLIENT": "0"}
    if database_url:
        env["RELAY_DATABASE_URL"] = database_url
    log = open(tmp_path / "relay.log", "ab")  # noqa: ASYNC230 -- a log file handed to the child process
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "relay", "serve", env=env,
                                                stdout=log, stderr=log)
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def test_kill_9_with_live_calls_keeps_their_usage(tmp_path):
    await _kill_9_case(tmp_path, "")


async def test_kill_9_with_live_calls_keeps_their_usage_on_postgresql(tmp_path, pg_database_url):
    await _kill_9_case(tmp_path, pg_database_url)


async def _kill_9_case(tmp_path, database_url: str) -> None:
    port = free_port()
    proc = await _serve(tmp_path, port, database_url)
    devices = [RelayClient(f"http://127.0.0.1:{port}", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "x" * 40,
                           demo=True, host_addresses=["127.0.0.1"]) for _ in range(4)]
    try:
        for device in devices:
            await device.connect()
        await asyncio.sleep(1.5)  # three checkpoint intervals
        proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for device in devices:
            await device.hangup()
    # restart on the same database: it opens cleanly and holds a row for each call
    proc = await _serve(tmp_path, port, database_url)
    try:
        db = await Database.connect(database_url or f"sqlite:///{tmp_path / 'data' / 'relay.db'}")
        try:
            rows = await usage.list_usage(db)
        finally:
            await db.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    kept = [r.ended_at - r.started_at for r in rows]
    print(f"\nkill -9 with {len(devices)} live calls: {len(rows)} usage rows kept, billed {sorted(kept)} s")
    assert len(rows) == len(devices)
    assert all(s > 0.3 for s in kept)
