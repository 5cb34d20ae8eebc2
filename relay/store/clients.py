"""Clients (devices): UUID id, workspace, assistant, TOFU secret hash, status.

Secret hashing: device secrets are random strings of at least 32 characters
(seed 001: ``crypto.randomBytes(32)``), i.e. >= ~190 bits of entropy, so a
brute-force or dictionary attack on a leaked hash is hopeless whatever the hash
speed. A slow password KDF (bcrypt/scrypt/argon2) would only add ~50 ms to
every call setup. We therefore store HMAC-SHA256(key=random per-client salt,
msg=secret) and compare with ``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from typing import Any

from relay.models import ClientRecord
from relay.store.db import Executor
from relay.store.errors import Conflict, NotFound

MIN_SECRET_CHARS = 32
MAX_SECRET_CHARS = 512
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    return bool(_UUID_RE.match(value))


def hash_secret(secret: str, salt_hex: str) -> str:
    return hmac.new(bytes.fromhex(salt_hex), secret.encode("utf-8"), hashlib.sha256).hexdigest()


def secret_matches(client: ClientRecord, secret: str) -> bool:
    """Constant-time check of ``secret`` against the enrolled hash (False when not enrolled)."""
    if client.secret_hash is None or client.secret_salt is None:
        return False
    return hmac.compare_digest(hash_secret(secret, client.secret_salt), client.secret_hash)


def _row(row: dict[str, Any]) -> ClientRecord:
    return ClientRecord(
        id=row["id"], workspace_id=row["workspace_id"], assistant_id=row["assistant_id"], name=row["name"],
        status=row["status"], enrolled_at=row["enrolled_at"], last_seen_at=row["last_seen_at"],
        created_at=row["created_at"], secret_hash=row["secret_hash"], secret_salt=row["secret_salt"],
    )


async def create(db: Executor, workspace_id: str, *, client_id: str | None = None, assistant_id: str | None = None,
                 name: str = "") -> ClientRecord:
    """Create a client (a fresh UUID unless ``client_id`` is given, which must be a UUID)."""
    cid = (client_id or str(uuid.uuid4())).lower()
    if not is_uuid(cid):
        raise ValueError("client id must be a UUID")
    if await db.fetchone("SELECT id FROM clients WHERE id = ?", cid):
        raise Conflict(f"client {cid} exists already")
    if not await db.fetchone("SELECT id FROM workspaces WHERE id = ?", workspace_id):
        raise NotFound(f"workspace {workspace_id} not found")
    if assistant_id is not None:
        row = await db.fetchone("SELECT workspace_id FROM assistants WHERE id = ?", assistant_id)
        if row is None:
            raise NotFound(f"assistant {assistant_id} not found")
        if row["workspace_id"] != workspace_id:
            raise Conflict("the assistant belongs to another workspace")
    await db.execute(
        "INSERT INTO clients (id, workspace_id, assistant_id, name, status, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        cid, workspace_id, assistant_id, name, "active", time.time(),
    )
    return await get(db, cid)


async def find(db: Executor, client_id: str) -> ClientRecord | None:
    row = await db.fetchone("SELECT * FROM clients WHERE id = ?", client_id.lower())
    return _row(row) if row else None


async def get(db: Executor, client_id: str) -> ClientRecord:
    client = await find(db, client_id)
    if client is None:
        raise NotFound(f"client {client_id} not found")
    return client


async def list_all(db: Executor, workspace_id: str | None = None, *, limit: int = 1000,
                   offset: int = 0) -> list[ClientRecord]:
    if workspace_id is None:
        rows = await db.fetchall("SELECT * FROM clients ORDER BY created_at, id LIMIT ? OFFSET ?", limit, offset)
    else:
        rows = await db.fetchall("SELECT * FROM clients WHERE workspace_id = ? ORDER BY created_at, id "
                                 "LIMIT ? OFFSET ?", workspace_id, limit, offset)
    return [_row(r) for r in rows]


async def enrol_secret(db: Executor, client_id: str, secret: str, *, now: float) -> bool:
    """Trust on first use: store the secret's hash if none is enrolled. False if another request won the race."""
    salt = secrets.token_hex(16)
    count = await db.execute(
        "UPDATE clients SET secret_hash = ?, secret_salt = ?, enrolled_at = ?, last_seen_at = ? "
        "WHERE id = ? AND secret_hash IS NULL",
        hash_secret(secret, salt), salt, now, now, client_id,
    )
    return count == 1


async def touch(db: Executor, client_id: str, *, now: float) -> None:
    await db.execute("UPDATE clients SET last_seen_at = ? WHERE id = ?", now, client_id)


async def set_status(db: Executor, client_id: str, status: str) -> ClientRecord:
    if status not in ("active", "disabled"):
        raise ValueError("status must be active or disabled")
    if not await db.execute("UPDATE clients SET status = ? WHERE id = ?", status, client_id.lower()):
        raise NotFound(f"client {client_id} not found")
    return await get(db, client_id)


async def reset_secret(db: Executor, client_id: str) -> ClientRecord:
    """Clear the enrolment: the next request's secret is enrolled anew."""
    if not await db.execute("UPDATE clients SET secret_hash = NULL, secret_salt = NULL, enrolled_at = NULL "
                            "WHERE id = ?", client_id.lower()):
        raise NotFound(f"client {client_id} not found")
    return await get(db, client_id)


async def set_assistant(db: Executor, client_id: str, assistant_id: str | None) -> ClientRecord:
    client = await get(db, client_id)
    if assistant_id is not None:
        row = await db.fetchone("SELECT workspace_id FROM assistants WHERE id = ?", assistant_id)
        if row is None:
            raise NotFound(f"assistant {assistant_id} not found")
        if row["workspace_id"] != client.workspace_id:
            raise Conflict("the assistant belongs to another workspace")
    await db.execute("UPDATE clients SET assistant_id = ? WHERE id = ?", assistant_id, client.id)
    return await get(db, client.id)


async def delete(db: Executor, client_id: str) -> None:
    if not await db.execute("DELETE FROM clients WHERE id = ?", client_id.lower()):
        raise NotFound(f"client {client_id} not found")
