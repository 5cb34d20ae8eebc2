"""Sessions issued by ``POST /v1/realtime/sessions`` (what was handed out, for audit)."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from relay.models import SessionRecord
from relay.store.db import Executor
from relay.store.errors import NotFound


def new_session_id() -> str:
    return "session_" + secrets.token_urlsafe(18)


def _issued(ice_servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Record what was issued, but never the TURN credential itself.
    return [{k: v for k, v in s.items() if k != "credential"} for s in ice_servers]


def _row(row: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        id=row["id"], client_id=row["client_id"], workspace_id=row["workspace_id"],
        assistant_id=row["assistant_id"], demo=bool(row["demo"]), created_at=row["created_at"],
        expires_at=row["expires_at"], ice_servers=orjson.loads(row["ice_servers"]),
        modalities=orjson.loads(row["modalities"]),
    )


async def create(db: Executor, *, client_id: str | None, workspace_id: str | None, assistant_id: str | None,
                 demo: bool, modalities: list[str], ice_servers: list[dict[str, Any]], now: float,
                 ttl_s: float, session_id: str | None = None) -> SessionRecord:
    """Insert the session row (one statement, no read-back: it is on every call's set-up path)."""
    sid = session_id or new_session_id()
    issued = _issued(ice_servers)
    created_at, expires_at = float(now), float(now + ttl_s)
    await db.execute(
        "INSERT INTO sessions (id, client_id, workspace_id, assistant_id, demo, modalities, ice_servers, "
        "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sid, client_id, workspace_id, assistant_id, demo, orjson.dumps(modalities).decode(),
        orjson.dumps(issued).decode(), created_at, expires_at,
    )
    return SessionRecord(id=sid, client_id=client_id, workspace_id=workspace_id, assistant_id=assistant_id,
                         demo=bool(demo), created_at=created_at, expires_at=expires_at, ice_servers=issued,
                         modalities=list(modalities))


async def get(db: Executor, session_id: str) -> SessionRecord:
    row = await db.fetchone("SELECT * FROM sessions WHERE id = ?", session_id)
    if row is None:
        raise NotFound(f"session {session_id} not found")
    return _row(row)


async def list_for_client(db: Executor, client_id: str, *, limit: int = 100) -> list[SessionRecord]:
    rows = await db.fetchall("SELECT * FROM sessions WHERE client_id = ? ORDER BY created_at DESC LIMIT ?",
                             client_id, limit)
    return [_row(r) for r in rows]


async def purge_expired(db: Executor, *, now: float, keep_s: float = 30 * 86400) -> int:
    """Delete session rows that expired more than ``keep_s`` ago."""
    return await db.execute("DELETE FROM sessions WHERE expires_at < ?", now - keep_s)
