"""Voice profiles of the app API (table ``app_voices``, migration 0100_app.sql)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.store.db import Executor
from relay.store.errors import NotFound

CATEGORIES = ("cloned", "workspace")
KINDS = ("clone", "design")


@dataclass(frozen=True)
class VoiceRow:
    id: str
    workspace_id: str
    client_id: str | None
    category: str
    kind: str
    name: str
    description: str = ""
    language: str = "en"
    design_prompt: str = ""
    transcript: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    engine_ref: dict[str, Any] = field(default_factory=dict)
    reference_key: str | None = None
    status: str = "ready"
    created_at: float = 0.0

    def visible_to(self, client_id: str) -> bool:
        """Seed 002: workspace voices, or clones created by this client."""
        return self.category == "workspace" or (self.category == "cloned" and self.client_id == client_id)

    def admin_json(self) -> dict[str, Any]:
        return {"voice_id": self.id, "workspace_id": self.workspace_id, "client_id": self.client_id,
                "category": self.category, "kind": self.kind, "name": self.name, "description": self.description,
                "language": self.language, "design_prompt": self.design_prompt, "transcript": self.transcript,
                "params": self.params, "synced_to_adapter": bool(self.engine_ref), "status": self.status,
                "created_at": self.created_at}


def _row(r: dict[str, Any]) -> VoiceRow:
    return VoiceRow(id=r["id"], workspace_id=r["workspace_id"], client_id=r["client_id"], category=r["category"],
                    kind=r["kind"], name=r["name"], description=r["description"], language=r["language"],
                    design_prompt=r["design_prompt"], transcript=r["transcript"],
                    params=orjson.loads(r["params"] or "{}"), engine_ref=orjson.loads(r["engine_ref"] or "{}"),
                    reference_key=r["reference_key"], status=r["status"], created_at=r["created_at"])


def new_id() -> str:
    return str(uuid.uuid4())


async def create(db: Executor, *, workspace_id: str, category: str, kind: str, name: str,
                 client_id: str | None = None, description: str = "", language: str = "en",
                 design_prompt: str = "", transcript: str = "", params: dict[str, Any] | None = None,
                 engine_ref: dict[str, Any] | None = None, reference_key: str | None = None,
                 status: str = "ready", voice_id: str | None = None) -> VoiceRow:
    if category not in CATEGORIES or kind not in KINDS:
        raise ValueError("bad category or kind")
    vid = voice_id or new_id()
    await db.execute(
        "INSERT INTO app_voices (id, workspace_id, client_id, category, kind, name, description, language, "
        "design_prompt, transcript, params, engine_ref, reference_key, status, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vid, workspace_id, client_id, category, kind, name, description, language, design_prompt, transcript,
        orjson.dumps(params or {}).decode(), orjson.dumps(engine_ref or {}).decode(), reference_key, status,
        time.time(),
    )
    return await get(db, vid)


async def get(db: Executor, voice_id: str) -> VoiceRow:
    row = await db.fetchone("SELECT * FROM app_voices WHERE id = ?", voice_id)
    if row is None:
        raise NotFound(f"voice {voice_id} not found")
    return _row(row)


async def find_in_workspace(db: Executor, workspace_id: str, voice_id: str) -> VoiceRow | None:
    row = await db.fetchone("SELECT * FROM app_voices WHERE id = ? AND workspace_id = ?", voice_id, workspace_id)
    return _row(row) if row else None


async def list_visible(db: Executor, workspace_id: str, client_id: str) -> list[VoiceRow]:
    """Workspace voices first (oldest first), then this client's clones (oldest first)."""
    rows = await db.fetchall(
        "SELECT * FROM app_voices WHERE workspace_id = ? AND (category = 'workspace' OR "
        "(category = 'cloned' AND client_id = ?)) "
        "ORDER BY CASE WHEN category = 'workspace' THEN 0 ELSE 1 END, created_at, id",
        workspace_id, client_id)
    return [_row(r) for r in rows]


async def list_workspace(db: Executor, workspace_id: str) -> list[VoiceRow]:
    rows = await db.fetchall("SELECT * FROM app_voices WHERE workspace_id = ? ORDER BY created_at, id", workspace_id)
    return [_row(r) for r in rows]


async def set_engine_ref(db: Executor, voice_id: str, engine_ref: dict[str, Any]) -> None:
    await db.execute("UPDATE app_voices SET engine_ref = ? WHERE id = ?", orjson.dumps(engine_ref).decode(), voice_id)


async def update(db: Executor, voice_id: str, **fields: Any) -> VoiceRow:
    allowed = {"name", "description"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown voice fields: {', '.join(sorted(unknown))}")
    name_value = fields.get("name", "x")
    if not isinstance(name_value, str) or not name_value.strip() or len(name_value) > 200:
        raise ValueError("name must be 1-200 characters")
    if not isinstance(fields.get("description", ""), str) or len(fields.get("description", "")) > 2000:
        raise ValueError("description must be a string of at most 2000 characters")
    for name, value in fields.items():
        await db.execute(f"UPDATE app_voices SET {name} = ? WHERE id = ?", value, voice_id)  # noqa: S608 (allowlist)
    return await get(db, voice_id)


async def delete(db: Executor, voice_id: str) -> VoiceRow:
    voice = await get(db, voice_id)
    await db.execute("DELETE FROM app_voices WHERE id = ?", voice_id)
    return voice
