"""Fixtures of the app API tests: a running app over SQLite and PostgreSQL, a workspace, devices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from relay.app_api import admin
from relay.app_api.services import AppServices
from relay.models import Workspace
from relay.store import clients as clients_repo
from relay.store import workspaces as workspaces_repo
from relay.store.app_voices import VoiceRow
from relay.store.db import Database
from relay.web.app_api.common import SERVICES


@dataclass
class Device:
    client_id: str
    secret: str
    key: str

    def headers(self, **extra: str) -> dict[str, str]:
        return {"X-Workspace-Key": self.key, "X-Client-Id": self.client_id, "X-Client-Secret": self.secret,
                **extra}


@dataclass
class Env:
    client: TestClient
    db: Database
    ws: Workspace
    key: str
    a: Device
    b: Device
    other_ws: Workspace
    other: Device
    voices: dict[str, VoiceRow] = field(default_factory=dict)

    @property
    def services(self) -> AppServices:
        return self.client.server.app[SERVICES]

    async def workspace_voice(self, name: str = "Bedtime narrator",
                              prompt: str = "Warm, calm adult voice suitable for bedtime stories.",
                              workspace_id: str | None = None) -> VoiceRow:
        return await admin.create_workspace_voice(self.db, self.services, workspace_id or self.ws.id, name=name,
                                                  design_prompt=prompt)

    async def design(self, device: Device, name: str = "Guide", prompt: str = "A cheerful young woman") -> dict:
        resp = await self.client.post("/v1/app/voices/design", headers=device.headers(),
                                      json={"name": name, "design_prompt": prompt, "language": "en"})
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def _device(db: Database, workspace_id: str, key: str, n: int) -> Device:
    client = await clients_repo.create(db, workspace_id)
    return Device(client.id, f"secret-{n}-" + "s" * 40, key)


async def build_env(db: Database, make_app: Callable[..., Awaitable[TestClient]], **overrides: Any) -> Env:
    client = await make_app(db=db, **overrides)
    ws, key = await workspaces_repo.create(db, "Stories Inc", with_key=True)
    other_ws, other_key = await workspaces_repo.create(db, "Elsewhere", with_key=True)
    assert key and other_key
    return Env(client=client, db=db, ws=ws, key=key, a=await _device(db, ws.id, key, 1),
               b=await _device(db, ws.id, key, 2), other_ws=other_ws,
               other=await _device(db, other_ws.id, other_key, 3))


@pytest.fixture
async def env(db: Database, make_app: Callable[..., Awaitable[TestClient]]) -> Env:
    """The app over SQLite and over PostgreSQL, with two workspaces and three devices."""
    return await build_env(db, make_app)


@pytest.fixture
async def sqlite_db(tmp_path) -> Database:  # noqa: ANN001
    database = await Database.connect(f"sqlite:///{tmp_path / 'app.db'}")
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
async def env_sqlite(sqlite_db: Database, make_app: Callable[..., Awaitable[TestClient]]) -> Env:
    """The same on SQLite only: for tests of audio and engines, where the store is not what is tested."""
    return await build_env(sqlite_db, make_app)


async def error_of(resp) -> tuple[int, str]:  # noqa: ANN001
    body = await resp.json()
    assert set(body) == {"detail"}, body
    assert set(body["detail"]) == {"error", "code"}, body
    assert body["detail"]["error"]
    return resp.status, body["detail"]["code"]
