"""Per-request analytics of the app API (``app_requests``): who called what, from which app (X-App-Source)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from relay.store.db import Executor

MAX_SOURCE_CHARS = 64


def clean_source(raw: str | None) -> str | None:
    if not raw:
        return None
    text = "".join(ch for ch in raw.strip() if ch.isprintable())[:MAX_SOURCE_CHARS]
    return text or None


async def record(db: Executor, *, workspace_id: str | None, client_id: str | None, app_source: str | None,
                 endpoint: str, status: int) -> None:
    await db.execute(
        "INSERT INTO app_requests (id, workspace_id, client_id, app_source, endpoint, status, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        str(uuid.uuid4()), workspace_id, client_id, clean_source(app_source), endpoint, status, time.time())


async def counts_by_source(db: Executor, workspace_id: str) -> list[dict[str, Any]]:
    return await db.fetchall(
        "SELECT app_source, endpoint, COUNT(*) AS requests FROM app_requests WHERE workspace_id = ? "
        "GROUP BY app_source, endpoint ORDER BY app_source, endpoint", workspace_id)


async def delete_older_than(db: Executor, cutoff: float) -> int:
    return await db.execute("DELETE FROM app_requests WHERE at < ?", cutoff)
