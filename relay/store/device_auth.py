"""One query for what device authentication needs: the client, its workspace and its assistant.

``authenticate`` (relay/auth.py) runs on every call set-up, twice (``POST /v1/realtime/sessions``
and ``POST /v1/realtime``). Three lookups (client, workspace, assistant) would be three round
trips to the database -- on SQLite three hops to aiosqlite's thread and back through a busy event
loop -- so they are one ``SELECT`` with two ``LEFT JOIN``s here. The assistant is resolved as
``relay.auth`` always did: the client's own assistant if it exists, else the workspace's default
if it exists, else none (the caller then uses the built-in default). Nothing is cached: a disabled
client, a reset secret or a changed assistant takes effect on the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.models import Assistant, ClientRecord, Workspace
from relay.store import assistants, clients, workspaces
from relay.store.db import Executor

_CLIENT = ("id", "workspace_id", "assistant_id", "name", "status", "secret_hash", "secret_salt", "enrolled_at",
           "last_seen_at", "created_at")
_WORKSPACE = ("id", "name", "key_hash", "allow_self_enrol", "allow_secretless", "default_assistant_id", "settings",
              "created_at")
_ASSISTANT = ("id", "workspace_id", "name", "provider", "upstream_url", "api_key", "model", "voice", "instructions",
              "tools", "device_tools", "turn_detection", "transcription", "input_audio_format",
              "output_audio_format", "dialect", "allow_g711", "device_update_allow", "created_at")


def _select(alias: str, prefix: str, cols: tuple[str, ...]) -> str:
    return ", ".join(f"{alias}.{c} AS {prefix}{c}" for c in cols)


SQL = (
    f"SELECT {_select('c', 'c_', _CLIENT)}, {_select('w', 'w_', _WORKSPACE)}, {_select('a', 'a_', _ASSISTANT)} "  # noqa: S608 (constant names)
    "FROM clients c "
    "LEFT JOIN workspaces w ON w.id = c.workspace_id "
    "LEFT JOIN assistants a ON a.id = COALESCE("
    "(SELECT ca.id FROM assistants ca WHERE ca.id = c.assistant_id), w.default_assistant_id) "
    "WHERE c.id = ?"
)


@dataclass(frozen=True)
class AuthContext:
    client: ClientRecord
    workspace: Workspace | None
    assistant: Assistant | None  # None: the built-in default assistant


def _part(row: dict[str, Any], prefix: str, cols: tuple[str, ...]) -> dict[str, Any] | None:
    if row[prefix + "id"] is None:
        return None
    return {c: row[prefix + c] for c in cols}


async def find(db: Executor, client_id: str) -> AuthContext | None:
    """The client ``client_id`` (any case) with its workspace and resolved assistant, in one query."""
    row = await db.fetchone(SQL, client_id.lower())
    if row is None:
        return None
    client = clients._row(_part(row, "c_", _CLIENT))  # type: ignore[arg-type]
    w = _part(row, "w_", _WORKSPACE)
    a = _part(row, "a_", _ASSISTANT)
    return AuthContext(client=client, workspace=workspaces._row(w) if w else None,
                       assistant=assistants._row(a) if a else None)
