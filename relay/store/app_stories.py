"""Stories of the app API (table ``app_stories``, migration 0100_app.sql)."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from relay.store.db import Executor
from relay.store.errors import Conflict, NotFound

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
MAX_TRANSCRIPT_CHARS = 50_000  # ~55 min read aloud (~145 MB of WAV, spooled to a temporary file)
WORDS_PER_MINUTE = 150  # estimated_reading_time_seconds: a calm read-aloud pace
FIELDS = ("slug", "name", "transcript", "excerpt", "age_group", "illustration_url", "illustration_alt",
          "sort_order", "default_voice_id")


@dataclass(frozen=True)
class StoryRow:
    id: str
    workspace_id: str
    slug: str | None
    name: str
    transcript: str
    excerpt: str | None
    age_group: str | None
    illustration_url: str | None
    illustration_alt: str | None
    sort_order: int
    default_voice_id: str | None
    created_at: float
    updated_at: float

    @property
    def estimated_reading_time_seconds(self) -> int:
        words = len(self.transcript.split())
        return int(round(words * 60 / WORDS_PER_MINUTE))

    def card_json(self) -> dict[str, Any]:
        return {"story_id": self.id, "slug": self.slug, "name": self.name, "excerpt": self.excerpt,
                "age_group": self.age_group, "illustration_url": self.illustration_url,
                "illustration_alt": self.illustration_alt, "sort_order": self.sort_order}

    def full_json(self) -> dict[str, Any]:
        return {"story_id": self.id, "slug": self.slug, "name": self.name, "transcript": self.transcript,
                "excerpt": self.excerpt, "age_group": self.age_group, "illustration_url": self.illustration_url,
                "illustration_alt": self.illustration_alt,
                "estimated_reading_time_seconds": self.estimated_reading_time_seconds}

    def admin_json(self) -> dict[str, Any]:
        return {**self.full_json(), "workspace_id": self.workspace_id, "sort_order": self.sort_order,
                "default_voice_id": self.default_voice_id, "created_at": self.created_at,
                "updated_at": self.updated_at}


def _row(r: dict[str, Any]) -> StoryRow:
    return StoryRow(**{k: r[k] for k in ("id", "workspace_id", "slug", "name", "transcript", "excerpt", "age_group",
                                         "illustration_url", "illustration_alt", "sort_order", "default_voice_id",
                                         "created_at", "updated_at")})


SORT_ORDER_MIN, SORT_ORDER_MAX = -(2**31), 2**31 - 1  # PostgreSQL INTEGER


def validate(fields: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise story fields (empty slug -> None). Raises ValueError with a clear message."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in FIELDS:
            raise ValueError(f"unknown story field {name!r}")
        if name == "slug":
            if value is not None and not isinstance(value, str):
                raise ValueError("slug must be a string")
            value = (value or "").strip().lower() or None
            if value is not None and not SLUG_RE.match(value):
                raise ValueError("slug must be 1-100 characters of a-z, 0-9 and '-' (not at the ends)")
        elif name == "sort_order":
            # an integer, or its decimal text (the CLI); never a float, and within the column's range
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) <= 12:
                value = int(value)
            # JSON has one number type: 3.0 is the integer 3 (as JSON Schema's "integer" says)
            if isinstance(value, float) and value.is_integer() and SORT_ORDER_MIN <= value <= SORT_ORDER_MAX:
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not SORT_ORDER_MIN <= value <= SORT_ORDER_MAX:
                raise ValueError(f"sort_order must be an integer from {SORT_ORDER_MIN} to {SORT_ORDER_MAX}")
        elif name == "name":
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise ValueError("name must be 1-200 characters")
        elif name == "transcript":
            if not isinstance(value, str) or len(value) > MAX_TRANSCRIPT_CHARS:
                raise ValueError(f"transcript must be a string of at most {MAX_TRANSCRIPT_CHARS} characters")
        elif value is not None:
            if not isinstance(value, str) or len(value) > 2000:
                raise ValueError(f"{name} must be a string of at most 2000 characters")
            value = value or None
        out[name] = value
    return out


async def create(db: Executor, workspace_id: str, **fields: Any) -> StoryRow:
    f = validate(fields)
    if "name" not in f:
        raise ValueError("a story needs a name")
    sid = str(uuid.uuid4())
    now = time.time()
    if f.get("slug") and await find_by_slug(db, workspace_id, f["slug"]):
        raise Conflict(f"slug {f['slug']!r} is taken in this workspace")
    await db.execute(
        "INSERT INTO app_stories (id, workspace_id, slug, name, transcript, excerpt, age_group, illustration_url, "
        "illustration_alt, sort_order, default_voice_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sid, workspace_id, f.get("slug"), f["name"], f.get("transcript", ""), f.get("excerpt"), f.get("age_group"),
        f.get("illustration_url"), f.get("illustration_alt"), f.get("sort_order", 0), f.get("default_voice_id"),
        now, now)
    return await get(db, sid)


async def get(db: Executor, story_id: str) -> StoryRow:
    row = await db.fetchone("SELECT * FROM app_stories WHERE id = ?", story_id)
    if row is None:
        raise NotFound(f"story {story_id} not found")
    return _row(row)


async def find_by_slug(db: Executor, workspace_id: str, slug: str) -> StoryRow | None:
    row = await db.fetchone("SELECT * FROM app_stories WHERE workspace_id = ? AND slug = ?", workspace_id, slug)
    return _row(row) if row else None


async def list_slugged(db: Executor, workspace_id: str) -> list[StoryRow]:
    rows = await db.fetchall(
        "SELECT * FROM app_stories WHERE workspace_id = ? AND slug IS NOT NULL AND slug <> '' "
        "ORDER BY sort_order, name, id", workspace_id)
    return [_row(r) for r in rows]


async def list_all(db: Executor, workspace_id: str | None = None) -> list[StoryRow]:
    if workspace_id is None:
        rows = await db.fetchall("SELECT * FROM app_stories ORDER BY workspace_id, sort_order, name, id")
    else:
        rows = await db.fetchall("SELECT * FROM app_stories WHERE workspace_id = ? ORDER BY sort_order, name, id",
                                 workspace_id)
    return [_row(r) for r in rows]


async def update(db: Executor, story_id: str, **fields: Any) -> StoryRow:
    story = await get(db, story_id)
    f = validate(fields)
    if f.get("slug") and f["slug"] != story.slug and await find_by_slug(db, story.workspace_id, f["slug"]):
        raise Conflict(f"slug {f['slug']!r} is taken in this workspace")
    for name, value in f.items():
        await db.execute(f"UPDATE app_stories SET {name} = ? WHERE id = ?", value, story_id)  # noqa: S608 (allowlist)
    await db.execute("UPDATE app_stories SET updated_at = ? WHERE id = ?", time.time(), story_id)
    return await get(db, story_id)


async def delete(db: Executor, story_id: str) -> None:
    if not await db.execute("DELETE FROM app_stories WHERE id = ?", story_id):
        raise NotFound(f"story {story_id} not found")
