"""Microbenchmark: the database part of a call set-up on SQLite, on an idle and on a busy event loop.

    python scripts/setup_db_microbench.py [--n 300] [--busy-ms 4]

Compares, on the same connection and loop:

- ``before``: aiosqlite's public API as relay's store used it until issue #4 (``execute`` = execute
  + close the cursor, ``fetchone`` = execute + fetchone + close: 2 and 3 thread hops), with the
  set-up's statements then: session INSERT + read-back, and for an enrolled device the client,
  workspace and assistant lookups (5 and 5 + 9 hops);
- ``after``: relay's ``Database`` now (one hop per statement, the joined auth lookup, no read-back).

"busy" adds what a loaded relay worker does meanwhile: every 1 ms a callback that holds the loop
(and the GIL) for ``--busy-ms`` / 5 ms, every 20 ms one that holds it for ``--busy-ms`` (the media
clock's batch). Each thread hop must wait for the loop's next turn and for the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from busyloop import busy as busy_loop  # scripts/busyloop.py (this script's folder is on sys.path)

from relay.store import assistants, clients, device_auth, sessions
from relay.store.db import Database


async def _old_fetchone(conn, sql: str, *args):
    async with conn.execute(sql, args) as cur:
        row = await cur.fetchone()
    return dict(row) if row is not None else None


async def _old_execute(conn, sql: str, *args) -> int:
    cur = await conn.execute(sql, args)
    n = cur.rowcount
    await cur.close()
    return n


async def before_session(db: Database, cid: str, enrolled: bool) -> None:
    conn = db._sqlite
    if enrolled:
        c = await _old_fetchone(conn, "SELECT * FROM clients WHERE id = ?", cid)
        await _old_fetchone(conn, "SELECT * FROM workspaces WHERE id = ?", c["workspace_id"])
        await _old_fetchone(conn, "SELECT * FROM assistants WHERE id = ?", c["assistant_id"])
    sid = sessions.new_session_id()
    await _old_execute(conn, "INSERT INTO sessions (id, client_id, workspace_id, assistant_id, demo, modalities, "
                             "ice_servers, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       sid, cid, "default", None, 0, "[]", "[]", 1.0, 2.0)
    await _old_fetchone(conn, "SELECT * FROM sessions WHERE id = ?", sid)


async def after_session(db: Database, cid: str, enrolled: bool) -> None:
    if enrolled:
        await device_auth.find(db, cid)
    await sessions.create(db, client_id=cid, workspace_id="default", assistant_id=None, demo=False,
                          modalities=[], ice_servers=[], now=1.0, ttl_s=1.0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--busy-ms", type=float, default=4.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.connect(f"sqlite:///{Path(tmp) / 'bench.db'}")
        await db.migrate()
        mine = await assistants.create(db, "default", "Mine")
        cid = (await clients.create(db, "default", assistant_id=mine.id)).id
        for busy in (False, True):
            stop = asyncio.Event()
            task = asyncio.create_task(busy_loop(stop, a.busy_ms)) if busy else None
            for enrolled in (False, True):
                res = {}
                for name, fn in (("before", before_session), ("after", after_session)) * 2:
                    samples = []
                    for _ in range(a.n):
                        t = time.perf_counter()
                        await fn(db, cid, enrolled)
                        samples.append((time.perf_counter() - t) * 1e3)
                    samples.sort()
                    res[name] = (statistics.median(samples), samples[int(len(samples) * 0.99) - 1])
                print(f"{'busy' if busy else 'idle'} loop, {'enrolled device' if enrolled else 'demo device':16s}"
                      + "".join(f"  {k}: p50 {v[0]:.2f} ms p99 {v[1]:.2f} ms" for k, v in res.items()))
            stop.set()
            if task is not None:
                await task
        await db.close()


if __name__ == "__main__":
    import uvloop  # relay's loop

    uvloop.run(main())
