"""Server-client API tokens (seed 003's WebSocket edge): created by the operator, stored hashed.

A token is ``rtk_<16 hex>.<43 random url-safe chars>``: the part before the dot is the
token's public id (shown in lists, used to revoke and in usage rows), the rest is 256
random bits. Like workspace keys the token is high-entropy, so its SHA-256 is stored
(no slow KDF needed) and compared with ``hmac.compare_digest``. The plain token is
returned once, by ``create``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from relay.store import assistants as assistants_repo
from relay.store import workspaces as workspaces_repo
from relay.store.db import Executor
from relay.store.errors import Conflict, NotFound

PREFIX = "rtk_"
CLIENT_DIALECTS = ("beta", "ga")
MAX_TOKEN_CHARS = 256
MAX_NAME_CHARS = 200
_ID_RE = re.compile(r"^rtk_[0-9a-f]{16}$")


@dataclass(frozen=True)
class ApiToken:
    id: str
    workspace_id: str
    assistant_id: str | None
    name: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    token_hash: str = field(repr=False, default="")
    client_dialect: str | None = None  # the dialect of its clients when their handshake does not say

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public_json(self) -> dict[str, Any]:
        """What the admin API shows (never the hash)."""
        return {"id": self.id, "workspace_id": self.workspace_id, "assistant_id": self.assistant_id,
                "name": self.name, "created_at": self.created_at, "last_used_at": self.last_used_at,
                "revoked_at": self.revoked_at, "revoked": self.revoked, "client_dialect": self.client_dialect}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id(token: str) -> str | None:
    """The public id of a well-formed token, else None."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    tid, dot, secret = token.partition(".")
    return tid if dot and secret and _ID_RE.match(tid) else None


def _row(row: dict[str, Any]) -> ApiToken:
    return ApiToken(id=row["id"], workspace_id=row["workspace_id"], assistant_id=row["assistant_id"],
                    name=row["name"], created_at=row["created_at"], last_used_at=row["last_used_at"],
                    revoked_at=row["revoked_at"], token_hash=row["token_hash"],
                    client_dialect=row.get("client_dialect"))


async def create(db: Executor, workspace_id: str, *, assistant_id: str | None = None,
                 name: str = "", client_dialect: str | None = None) -> tuple[ApiToken, str]:
    """Create a token for ``workspace_id`` (optionally bound to one of its assistants, optionally
    with its clients' dialect). Returns the record and the plain token (shown once, never stored)."""
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"name must be a string of at most {MAX_NAME_CHARS} characters")
    if client_dialect is not None and client_dialect not in CLIENT_DIALECTS:
        raise ValueError(f"client_dialect must be one of {', '.join(CLIENT_DIALECTS)} (or null)")
    await workspaces_repo.get(db, workspace_id)  # NotFound
    if assistant_id:
        assistant = await assistants_repo.find(db, assistant_id)
        if assistant is None:
            raise NotFound(f"assistant {assistant_id} not found")
        if assistant.workspace_id != workspace_id:
            raise Conflict("the assistant belongs to another workspace")
    tid = PREFIX + secrets.token_hex(8)
    plain = f"{tid}.{secrets.token_urlsafe(32)}"
    await db.execute(
        "INSERT INTO api_tokens (id, workspace_id, assistant_id, name, token_hash, created_at, client_dialect) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", tid, workspace_id, assistant_id or None, name, digest(plain), time.time(),
        client_dialect)
    return await get(db, tid), plain


async def get(db: Executor, tid: str) -> ApiToken:
    row = await db.fetchone("SELECT * FROM api_tokens WHERE id = ?", tid)
    if row is None:
        raise NotFound(f"token {tid} not found")
    return _row(row)


async def find(db: Executor, tid: str) -> ApiToken | None:
    row = await db.fetchone("SELECT * FROM api_tokens WHERE id = ?", tid)
    return _row(row) if row else None


async def list_all(db: Executor, workspace_id: str | None = None) -> list[ApiToken]:
    if workspace_id is None:
        rows = await db.fetchall("SELECT * FROM api_tokens ORDER BY created_at, id")
    else:
        rows = await db.fetchall("SELECT * FROM api_tokens WHERE workspace_id = ? ORDER BY created_at, id",
                                 workspace_id)
    return [_row(r) for r in rows]


async def revoke(db: Executor, tid: str, *, now: float | None = None) -> ApiToken:
    """Revoke a token (idempotent: the first revocation time is kept)."""
    token = await get(db, tid)
    if token.revoked_at is None:
        await db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                         time.time() if now is None else now, tid)
    return await get(db, tid)


async def touch(db: Executor, tid: str, *, now: float) -> None:
    await db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", now, tid)


async def verify(db: Executor, token: str) -> tuple[str, ApiToken | None]:
    """Check a presented token: ``(status, record)`` with status ``ok``, ``revoked`` (the right
    secret of a revoked token), ``mismatch`` (a known id, a wrong secret), ``unknown`` or ``malformed``."""
    tid = token_id(token)
    if tid is None:
        return "malformed", None
    record = await find(db, tid)
    if record is None:
        return "unknown", None
    if not hmac.compare_digest(digest(token), record.token_hash):
        return "mismatch", record
    return ("revoked" if record.revoked else "ok"), record
