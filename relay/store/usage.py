"""Usage rows: one per call, written by the media plane (#3) with ``record_usage``.

A call's row is keyed by its session id (``usage_row_id``): checkpoints while the call
runs (``record_usage_many``, batched in one transaction) and the final write at its end
all upsert the same row, so a crash loses at most one checkpoint interval of a call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from relay.store.db import Executor


@dataclass(frozen=True)
class UsageRow:
    id: str
    session_id: str | None
    client_id: str | None
    workspace_id: str | None
    assistant_id: str | None
    demo: bool
    started_at: float
    ended_at: float
    input_tokens: int
    output_tokens: int
    input_audio_s: float
    output_audio_s: float


_USAGE_IDS = uuid.UUID("6f1d7f3e-3c55-4f0e-9a43-7a2b8c1e5d20")  # namespace of usage row ids

_UPSERT = (
    "INSERT INTO usage (id, session_id, client_id, workspace_id, assistant_id, demo, started_at, ended_at, "
    "input_tokens, output_tokens, input_audio_s, output_audio_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at, input_tokens = excluded.input_tokens, "
    "output_tokens = excluded.output_tokens, input_audio_s = excluded.input_audio_s, "
    "output_audio_s = excluded.output_audio_s"
)


def usage_row_id(session_id: str | None) -> str:
    """The id of a call's usage row: derived from its session id (one row per call), random without one."""
    return str(uuid.uuid5(_USAGE_IDS, session_id)) if session_id else str(uuid.uuid4())


def usage_row(*, session_id: str | None, client_id: str | None, started_at: float, ended_at: float,
              input_tokens: int = 0, output_tokens: int = 0, input_audio_s: float = 0.0, output_audio_s: float = 0.0,
              workspace_id: str | None = None, assistant_id: str | None = None, demo: bool = False) -> UsageRow:
    """A validated row (``ValueError`` for an end before the start or negative counts)."""
    if ended_at < started_at:
        raise ValueError("ended_at before started_at")
    if min(input_tokens, output_tokens) < 0 or min(input_audio_s, output_audio_s) < 0:
        raise ValueError("usage counts must not be negative")
    return UsageRow(id=usage_row_id(session_id), session_id=session_id, client_id=client_id,
                    workspace_id=workspace_id, assistant_id=assistant_id, demo=bool(demo),
                    started_at=float(started_at), ended_at=float(ended_at), input_tokens=int(input_tokens),
                    output_tokens=int(output_tokens), input_audio_s=float(input_audio_s),
                    output_audio_s=float(output_audio_s))


def _args(row: UsageRow) -> tuple[Any, ...]:
    return (row.id, row.session_id, row.client_id, row.workspace_id, row.assistant_id, row.demo, row.started_at,
            row.ended_at, row.input_tokens, row.output_tokens, row.input_audio_s, row.output_audio_s)


async def record_usage(db: Executor, *, session_id: str | None, client_id: str | None, started_at: float,
                       ended_at: float, input_tokens: int = 0, output_tokens: int = 0, input_audio_s: float = 0.0,
                       output_audio_s: float = 0.0, workspace_id: str | None = None,
                       assistant_id: str | None = None, demo: bool = False) -> UsageRow:
    """Record (upsert) one call's usage (tokens from ``response.done`` usage; audio seconds each way)."""
    row = usage_row(session_id=session_id, client_id=client_id, started_at=started_at, ended_at=ended_at,
                    input_tokens=input_tokens, output_tokens=output_tokens, input_audio_s=input_audio_s,
                    output_audio_s=output_audio_s, workspace_id=workspace_id, assistant_id=assistant_id, demo=demo)
    # one statement, no read-back: every call's teardown writes one, 20 a second under churn
    await db.execute(_UPSERT, *_args(row))
    return row


async def record_usage_many(db: Any, rows: list[UsageRow]) -> None:
    """Upsert many calls' rows in one transaction (a checkpoint of every live call)."""
    if not rows:
        return
    if len(rows) == 1:  # a call's final row: one statement, no transaction round trips
        await db.execute(_UPSERT, *_args(rows[0]))
        return
    async with db.transaction() as tx:
        for row in rows:
            await tx.execute(_UPSERT, *_args(row))


def _row(row: dict[str, Any]) -> UsageRow:
    return UsageRow(**{**row, "demo": bool(row["demo"])})


async def list_usage(db: Executor, *, client_id: str | None = None, limit: int = 1000) -> list[UsageRow]:
    if client_id is None:
        rows = await db.fetchall("SELECT * FROM usage ORDER BY started_at DESC LIMIT ?", limit)
    else:
        rows = await db.fetchall("SELECT * FROM usage WHERE client_id = ? ORDER BY started_at DESC LIMIT ?",
                                 client_id, limit)
    return [_row(r) for r in rows]


async def totals(db: Executor, client_id: str) -> dict[str, float | int]:
    """A client's calls and tokens (integers) and call seconds."""
    row = await db.fetchone(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(input_tokens), 0) AS input_tokens, "
        "COALESCE(SUM(output_tokens), 0) AS output_tokens, COALESCE(SUM(ended_at - started_at), 0) AS seconds "
        "FROM usage WHERE client_id = ?", client_id)
    assert row is not None
    return {"calls": int(row["calls"]), "input_tokens": int(row["input_tokens"]),
            "output_tokens": int(row["output_tokens"]), "seconds": round(float(row["seconds"]), 3)}


MAX_DAILY_ROWS = 1_000_000  # usage rows read for one report (a bound, not a page)


async def daily(db: Executor, *, since: float, workspace_id: str | None = None,
                client_id: str | None = None) -> list[dict[str, Any]]:
    """Usage per workspace, client and UTC day for calls started at or after ``since`` (epoch s).

    Each row: ``day`` (YYYY-MM-DD), ``workspace_id``, ``client_id``, ``calls``, ``input_tokens``,
    ``output_tokens`` (integers), ``seconds``, ``input_audio_s``, ``output_audio_s``. Newest day first.
    """
    import datetime as dt

    sql = ("SELECT workspace_id, client_id, started_at, ended_at, input_tokens, output_tokens, input_audio_s, "
           "output_audio_s FROM usage WHERE started_at >= ?")
    args: list[Any] = [since]
    if workspace_id is not None:
        sql += " AND workspace_id = ?"
        args.append(workspace_id)
    if client_id is not None:
        sql += " AND client_id = ?"
        args.append(client_id)
    rows = await db.fetchall(sql + " LIMIT ?", *args, MAX_DAILY_ROWS)
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        day = dt.datetime.fromtimestamp(float(r["started_at"]), dt.UTC).strftime("%Y-%m-%d")
        key = (day, r["workspace_id"] or "", r["client_id"] or "")
        g = groups.setdefault(key, {"day": day, "workspace_id": r["workspace_id"], "client_id": r["client_id"],
                                    "calls": 0, "input_tokens": 0, "output_tokens": 0, "seconds": 0.0,
                                    "input_audio_s": 0.0, "output_audio_s": 0.0})
        g["calls"] += 1
        g["input_tokens"] += int(r["input_tokens"])
        g["output_tokens"] += int(r["output_tokens"])
        g["seconds"] += float(r["ended_at"]) - float(r["started_at"])
        g["input_audio_s"] += float(r["input_audio_s"])
        g["output_audio_s"] += float(r["output_audio_s"])
    out = sorted(groups.values(), key=lambda g: (g["day"], g["workspace_id"] or "", g["client_id"] or ""))
    out.sort(key=lambda g: g["day"], reverse=True)
    for g in out:
        for k in ("seconds", "input_audio_s", "output_audio_s"):
            g[k] = round(g[k], 3)
    return out
