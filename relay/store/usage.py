"""Usage rows: one per finished call, written by the media plane (#3) with ``record_usage``."""

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


async def record_usage(db: Executor, *, session_id: str | None, client_id: str | None, started_at: float,
                       ended_at: float, input_tokens: int = 0, output_tokens: int = 0, input_audio_s: float = 0.0,
                       output_audio_s: float = 0.0, workspace_id: str | None = None,
                       assistant_id: str | None = None, demo: bool = False) -> UsageRow:
    """Record one call's usage (tokens from ``response.done`` usage; audio seconds each way)."""
    if ended_at < started_at:
        raise ValueError("ended_at before started_at")
    if min(input_tokens, output_tokens) < 0 or min(input_audio_s, output_audio_s) < 0:
        raise ValueError("usage counts must not be negative")
    row = UsageRow(id=str(uuid.uuid4()), session_id=session_id, client_id=client_id, workspace_id=workspace_id,
                   assistant_id=assistant_id, demo=bool(demo), started_at=float(started_at),
                   ended_at=float(ended_at), input_tokens=int(input_tokens), output_tokens=int(output_tokens),
                   input_audio_s=float(input_audio_s), output_audio_s=float(output_audio_s))
    # one statement, no read-back: every call's teardown writes one, 20 a second under churn
    await db.execute(
        "INSERT INTO usage (id, session_id, client_id, workspace_id, assistant_id, demo, started_at, ended_at, "
        "input_tokens, output_tokens, input_audio_s, output_audio_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row.id, row.session_id, row.client_id, row.workspace_id, row.assistant_id, row.demo, row.started_at,
        row.ended_at, row.input_tokens, row.output_tokens, row.input_audio_s, row.output_audio_s,
    )
    return row


def _row(row: dict[str, Any]) -> UsageRow:
    return UsageRow(**{**row, "demo": bool(row["demo"])})


async def list_usage(db: Executor, *, client_id: str | None = None, limit: int = 1000) -> list[UsageRow]:
    if client_id is None:
        rows = await db.fetchall("SELECT * FROM usage ORDER BY started_at DESC LIMIT ?", limit)
    else:
        rows = await db.fetchall("SELECT * FROM usage WHERE client_id = ? ORDER BY started_at DESC LIMIT ?",
                                 client_id, limit)
    return [_row(r) for r in rows]


async def totals(db: Executor, client_id: str) -> dict[str, float]:
    row = await db.fetchone(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(input_tokens), 0) AS input_tokens, "
        "COALESCE(SUM(output_tokens), 0) AS output_tokens, COALESCE(SUM(ended_at - started_at), 0) AS seconds "
        "FROM usage WHERE client_id = ?", client_id)
    assert row is not None
    return {k: float(v) for k, v in row.items()}
