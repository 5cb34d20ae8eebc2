"""Assistants: which upstream, model, voice, instructions and tools a client's calls use."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from relay.models import (
    AUDIO_FORMATS,
    DEFAULT_DEVICE_UPDATE_ALLOW,
    DEVICE_UPDATABLE_FIELDS,
    DIALECTS,
    PROVIDERS,
    Assistant,
    Tool,
)
from relay.store.db import Executor
from relay.store.errors import NotFound

_JSON_FIELDS = ("tools", "turn_detection", "transcription", "device_update_allow")
FIELDS = ("name", "provider", "upstream_url", "api_key", "model", "voice", "instructions", "tools", "device_tools",
          "turn_detection", "transcription", "input_audio_format", "output_audio_format", "dialect", "allow_g711",
          "device_update_allow")
_MAX_TEXT = 32 * 1024


def validate(fields: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise assistant fields (from the CLI, a file or the admin API). Raises ValueError."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown assistant fields: {', '.join(sorted(unknown))}")
    out = dict(fields)
    for name in ("name", "upstream_url", "api_key", "model", "voice", "instructions"):
        if name in out:
            if not isinstance(out[name], str):
                raise ValueError(f"{name} must be a string")
            if len(out[name]) > _MAX_TEXT:
                raise ValueError(f"{name} is too long")
    if "name" in out and not out["name"].strip():
        raise ValueError("name must not be empty")
    if "provider" in out and out["provider"] not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")
    if "dialect" in out and out["dialect"] not in DIALECTS:
        raise ValueError("dialect must be beta or ga")
    for name in ("input_audio_format", "output_audio_format"):
        if name in out and out[name] not in AUDIO_FORMATS:
            raise ValueError(f"{name} must be one of {', '.join(AUDIO_FORMATS)}")
    for name in ("device_tools", "allow_g711"):
        if name in out and not isinstance(out[name], bool):
            raise ValueError(f"{name} must be true or false")
    if out.get("upstream_url") and not out["upstream_url"].startswith(("ws://", "wss://")):
        raise ValueError("upstream_url must be a ws:// or wss:// URL")
    if "tools" in out:
        if not isinstance(out["tools"], list):
            raise ValueError("tools must be a list")
        tools = [Tool.from_json(t) for t in out["tools"]]
        if len({t.name for t in tools}) != len(tools):
            raise ValueError("tool names must be unique")
        out["tools"] = [t.to_json() for t in tools]
    for name in ("turn_detection", "transcription"):
        if name in out and out[name] is not None and not isinstance(out[name], dict):
            raise ValueError(f"{name} must be a JSON object or null")
    if "device_update_allow" in out:
        allow = out["device_update_allow"]
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise ValueError("device_update_allow must be a list of session field names")
        bad = sorted(a for a in allow if a.split(".", 1)[0] not in DEVICE_UPDATABLE_FIELDS)
        if bad:
            raise ValueError(f"device_update_allow: unknown session fields {', '.join(bad)}")
    return out


def _row(row: dict[str, Any]) -> Assistant:
    return Assistant(
        id=row["id"], name=row["name"], workspace_id=row["workspace_id"], provider=row["provider"],
        upstream_url=row["upstream_url"], api_key=row["api_key"], model=row["model"], voice=row["voice"],
        instructions=row["instructions"],
        tools=tuple(Tool.from_json(t) for t in orjson.loads(row["tools"] or "[]")),
        device_tools=bool(row["device_tools"]),
        turn_detection=orjson.loads(row["turn_detection"]) if row["turn_detection"] else None,
        transcription=orjson.loads(row["transcription"]) if row["transcription"] else None,
        input_audio_format=row["input_audio_format"], output_audio_format=row["output_audio_format"],
        dialect=row["dialect"], allow_g711=bool(row["allow_g711"]),
        device_update_allow=tuple(orjson.loads(row["device_update_allow"] or "[]")),
        created_at=row["created_at"],
    )


def _db_value(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return orjson.dumps(value).decode() if value is not None else None
    return value


async def create(db: Executor, workspace_id: str, name: str, **fields: Any) -> Assistant:
    fields = validate({"name": name, **fields})
    fields.setdefault("provider", "openai" if fields.get("upstream_url") else "local")
    if fields["provider"] == "local":
        fields.setdefault("model", "relay-echo")
    fields.setdefault("turn_detection", {"type": "server_vad"})
    fields.setdefault("device_update_allow", list(DEFAULT_DEVICE_UPDATE_ALLOW))
    aid = str(uuid.uuid4())
    cols = ["id", "workspace_id", "created_at", *fields]
    vals = [aid, workspace_id, time.time(), *(_db_value(k, v) for k, v in fields.items())]
    await db.execute(f"INSERT INTO assistants ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", *vals)  # noqa: S608
    return await get(db, aid)


async def get(db: Executor, assistant_id: str) -> Assistant:
    row = await db.fetchone("SELECT * FROM assistants WHERE id = ?", assistant_id)
    if row is None:
        raise NotFound(f"assistant {assistant_id} not found")
    return _row(row)


async def find(db: Executor, assistant_id: str) -> Assistant | None:
    row = await db.fetchone("SELECT * FROM assistants WHERE id = ?", assistant_id)
    return _row(row) if row else None


async def list_all(db: Executor, workspace_id: str | None = None) -> list[Assistant]:
    if workspace_id is None:
        rows = await db.fetchall("SELECT * FROM assistants ORDER BY created_at, id")
    else:
        rows = await db.fetchall("SELECT * FROM assistants WHERE workspace_id = ? ORDER BY created_at, id",
                                 workspace_id)
    return [_row(r) for r in rows]


async def update(db: Executor, assistant_id: str, **fields: Any) -> Assistant:
    fields = validate(fields)
    await get(db, assistant_id)
    for name, value in fields.items():
        await db.execute(f"UPDATE assistants SET {name} = ? WHERE id = ?", _db_value(name, value), assistant_id)  # noqa: S608
    return await get(db, assistant_id)


async def delete(db: Executor, assistant_id: str) -> None:
    if not await db.execute("DELETE FROM assistants WHERE id = ?", assistant_id):
        raise NotFound(f"assistant {assistant_id} not found")
