"""The fleet's live-call registry: which node and worker holds which call, under a lease.

One row per live call (``live_calls``), written when a call is admitted and deleted when it ends.
Its holder (``node:pid``, one per worker process) renews the lease of all its rows in one statement
every ``lease_s / 3``; a worker or node that dies stops renewing, and its rows stop counting once
their lease has passed (``purge_expired`` deletes them later). What reads it:

- the caps: ``admit`` inserts the row only while the client has fewer than ``client_cap`` and the
  workspace fewer than ``workspace_cap`` live (unexpired) calls, fleet-wide, in ONE round trip
  (the call set-up's only extra one). PostgreSQL: ``relay_admit_call()``, which takes an advisory
  lock per workspace and per client before counting, so concurrent admissions on any node cannot
  both pass the last slot (each statement of a volatile function sees what committed before it).
  SQLite: one ``INSERT ... SELECT ... WHERE count < cap`` (SQLite has one writer at a time);
- operators: ``list_live`` (every node's calls) and ``request_end``: the row is marked, and the
  holder's next renewal returns it, so the worker that holds the call ends it (``renew``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from relay.store.db import Database

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION relay_admit_call(p_call TEXT, p_client TEXT, p_workspace TEXT, p_edge TEXT,
    p_node TEXT, p_worker BIGINT, p_holder TEXT, p_now DOUBLE PRECISION, p_lease_until DOUBLE PRECISION,
    p_client_cap BIGINT, p_workspace_cap BIGINT) RETURNS TEXT AS $fn$
BEGIN
    IF p_workspace_cap > 0 AND p_workspace <> '' THEN
        PERFORM pg_advisory_xact_lock(7303101, hashtext(p_workspace));
        IF (SELECT count(*) FROM live_calls WHERE workspace_id = p_workspace AND lease_until > p_now)
                >= p_workspace_cap THEN
            RETURN 'workspace';
        END IF;
    END IF;
    IF p_client_cap > 0 THEN
        PERFORM pg_advisory_xact_lock(7303100, hashtext(p_client));
        IF (SELECT count(*) FROM live_calls WHERE client_id = p_client AND lease_until > p_now) >= p_client_cap THEN
            RETURN 'client';
        END IF;
    END IF;
    INSERT INTO live_calls (call_id, client_id, workspace_id, edge, node, worker, holder, started_at, lease_until)
        VALUES (p_call, p_client, p_workspace, p_edge, p_node, p_worker, p_holder, p_now, p_lease_until);
    RETURN '';
END
$fn$ LANGUAGE plpgsql VOLATILE
"""

_SQLITE_ADMIT = (
    "INSERT INTO live_calls (call_id, client_id, workspace_id, edge, node, worker, holder, started_at, lease_until) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE "
    "(? <= 0 OR ? = '' OR (SELECT count(*) FROM live_calls WHERE workspace_id = ? AND lease_until > ?) < ?) AND "
    "(? <= 0 OR (SELECT count(*) FROM live_calls WHERE client_id = ? AND lease_until > ?) < ?)"
)


class CapReached(Exception):
    """The client (``which == "client"``) or its workspace (``"workspace"``) is at its fleet-wide cap."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


@dataclass(frozen=True)
class LiveCall:
    call_id: str
    client_id: str
    workspace_id: str
    edge: str
    node: str
    worker: int
    started_at: float
    lease_until: float
    end_requested: bool


async def ensure_schema(db: Database) -> None:
    """PostgreSQL: (re)create ``relay_admit_call`` and the failed-secret throttle's ``relay_auth_attempt``
    (``relay.store.auth_failures``; idempotent; serialized across nodes). SQLite: nothing."""
    from relay.store import auth_failures

    await auth_failures.ensure_schema(db)
    if db.dialect != "postgresql":
        return
    async with db.transaction() as tx:
        await tx.execute("SELECT pg_advisory_xact_lock(7303004)")
        await tx.execute(_PG_FUNCTION)


async def admit(db: Database, *, call_id: str, client_id: str, workspace_id: str | None, node: str, worker: int,
                holder: str, lease_s: float, client_cap: int, workspace_cap: int, edge: str = "webrtc",
                now: float | None = None) -> None:
    """Register a call if the caps allow it (one round trip); ``CapReached`` otherwise."""
    now = time.time() if now is None else now
    ws = workspace_id or ""
    if db.dialect == "postgresql":
        row = await db.fetchone("SELECT relay_admit_call(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) AS refused",
                                call_id, client_id, ws, edge, node, worker, holder, now, now + lease_s,
                                client_cap, workspace_cap)
        refused = (row or {}).get("refused") or ""
        if refused:
            raise CapReached(refused)
        return
    for attempt in range(5):  # several worker processes on one SQLite file: a rare busy snapshot
        try:
            inserted = await db.execute(_SQLITE_ADMIT, call_id, client_id, ws, edge, node, worker, holder, now,
                                        now + lease_s, workspace_cap, ws, ws, now, workspace_cap,
                                        client_cap, client_id, now, client_cap)
            break
        except Exception as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 4:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    if not inserted:  # refused: which cap (the refusal path may take a second look)
        row = await db.fetchone("SELECT count(*) AS n FROM live_calls WHERE client_id = ? AND lease_until > ?",
                                client_id, now)
        raise CapReached("client" if client_cap > 0 and row and row["n"] >= client_cap else "workspace")


async def release(db: Database, call_id: str) -> None:
    """The call ended: its row goes."""
    await db.execute("DELETE FROM live_calls WHERE call_id = ?", call_id)


async def renew(db: Database, holder: str, lease_s: float, now: float | None = None) -> list[str]:
    """Extend the lease of every call ``holder`` holds (one statement); returns those an operator asked to end."""
    now = time.time() if now is None else now
    rows = await db.fetchall("UPDATE live_calls SET lease_until = ? WHERE holder = ? RETURNING call_id, end_requested",
                             now + lease_s, holder)
    return [r["call_id"] for r in rows if r["end_requested"]]


async def request_end(db: Database, call_id: str) -> bool:
    """Ask the holder to end a call (it does at its next renewal); False when no such live call."""
    return await db.execute("UPDATE live_calls SET end_requested = 1 WHERE call_id = ?", call_id) == 1


async def list_live(db: Database, *, workspace_id: str | None = None, client_id: str | None = None,
                    now: float | None = None) -> list[LiveCall]:
    """Every unexpired live call of the fleet (optionally of one workspace or client), oldest first."""
    now = time.time() if now is None else now
    sql, args = "SELECT * FROM live_calls WHERE lease_until > ?", [now]
    if workspace_id is not None:
        sql, args = sql + " AND workspace_id = ?", [*args, workspace_id]
    if client_id is not None:
        sql, args = sql + " AND client_id = ?", [*args, client_id]
    rows = await db.fetchall(sql + " ORDER BY started_at, call_id", *args)
    return [_row(r) for r in rows]


async def purge_expired(db: Database, now: float | None = None, grace_s: float = 60.0) -> int:
    """Delete rows whose lease passed more than ``grace_s`` ago (their holder is gone)."""
    now = time.time() if now is None else now
    return await db.execute("DELETE FROM live_calls WHERE lease_until < ?", now - grace_s)


def _row(r: dict[str, Any]) -> LiveCall:
    return LiveCall(call_id=r["call_id"], client_id=r["client_id"], workspace_id=r["workspace_id"], edge=r["edge"],
                    node=r["node"], worker=int(r["worker"]), started_at=float(r["started_at"]),
                    lease_until=float(r["lease_until"]), end_requested=bool(r["end_requested"]))
