"""Workspaces: a tenant with an optional self-enrolment key and device-auth policy.

The workspace key is a relay-generated random token (``rwk_`` + 32 random bytes),
so it is stored as its SHA-256 (fast, indexable lookup; no slow KDF needed for
high-entropy tokens) and compared again with ``hmac.compare_digest`` after lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

import orjson

from relay.models import Workspace
from relay.store.db import Executor
from relay.store.errors import NotFound

KEY_PREFIX = "rwk_"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _row(row: dict[str, Any]) -> Workspace:
    return Workspace(
        id=row["id"], name=row["name"], allow_self_enrol=bool(row["allow_self_enrol"]),
        allow_secretless=bool(row["allow_secretless"]), default_assistant_id=row["default_assistant_id"],
        settings=orjson.loads(row["settings"] or "{}"), has_key=row["key_hash"] is not None,
        created_at=row["created_at"],
    )


async def create(db: Executor, name: str, *, allow_self_enrol: bool = False, allow_secretless: bool = False,
                 settings: dict[str, Any] | None = None, with_key: bool = False,
                 workspace_id: str | None = None) -> tuple[Workspace, str | None]:
    """Create a workspace; returns it and, when ``with_key``, the plain key (shown once, never stored)."""
    wid = workspace_id or str(uuid.uuid4())
    key = new_key() if with_key else None
    await db.execute(
        "INSERT INTO workspaces (id, name, key_hash, allow_self_enrol, allow_secretless, settings, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        wid, name, key_digest(key) if key else None, allow_self_enrol, allow_secretless,
        orjson.dumps(settings or {}).decode(), time.time(),
    )
    return await get(db, wid), key


async def get(db: Executor, workspace_id: str) -> Workspace:
    row = await db.fetchone("SELECT * FROM workspaces WHERE id = ?", workspace_id)
    if row is None:
        raise NotFound(f"workspace {workspace_id} not found")
    return _row(row)


async def find(db: Executor, workspace_id: str) -> Workspace | None:
    row = await db.fetchone("SELECT * FROM workspaces WHERE id = ?", workspace_id)
    return _row(row) if row else None


async def list_all(db: Executor) -> list[Workspace]:
    return [_row(r) for r in await db.fetchall("SELECT * FROM workspaces ORDER BY created_at, id")]


async def by_key(db: Executor, key: str) -> Workspace | None:
    """The workspace whose key is ``key``, or None."""
    if not key or len(key) > 256:
        return None
    digest = key_digest(key)
    row = await db.fetchone("SELECT * FROM workspaces WHERE key_hash = ?", digest)
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return None
    return _row(row)


async def rotate_key(db: Executor, workspace_id: str) -> str:
    """Issue a new key (the old one stops working); returns the plain key."""
    key = new_key()
    if not await db.execute("UPDATE workspaces SET key_hash = ? WHERE id = ?", key_digest(key), workspace_id):
        raise NotFound(f"workspace {workspace_id} not found")
    return key


async def update(db: Executor, workspace_id: str, **fields: Any) -> Workspace:
    """Update name, allow_self_enrol, allow_secretless, default_assistant_id, settings."""
    allowed = {"name", "allow_self_enrol", "allow_secretless", "default_assistant_id", "settings"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown workspace fields: {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        if name == "settings":
            value = orjson.dumps(value or {}).decode()
        await db.execute(f"UPDATE workspaces SET {name} = ? WHERE id = ?", value, workspace_id)  # noqa: S608 (name from allowlist)
    return await get(db, workspace_id)


async def delete(db: Executor, workspace_id: str) -> None:
    if not await db.execute("DELETE FROM workspaces WHERE id = ?", workspace_id):
        raise NotFound(f"workspace {workspace_id} not found")
