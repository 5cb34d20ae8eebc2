"""Helpers for foundation tests: seed the app's store, build device headers."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp.test_utils import TestClient

from relay.store.db import Database
from relay.web import keys

SESSIONS = "/v1/realtime/sessions"
BODY = {"modalities": ["text", "audio"]}


def new_secret() -> str:
    return secrets.token_hex(24)  # 48 chars


def db_of(client: TestClient) -> Database:
    return client.server.app[keys.DB]


def device_headers(client_id: str | None = None, secret: str | None = None, **extra: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    if client_id is not None:
        headers["X-Client-Id"] = client_id
    if secret is not None:
        headers["X-Client-Secret"] = secret
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return headers


async def post_session(client: TestClient, headers: dict[str, str], body: Any = BODY) -> tuple[int, Any, Any]:
    resp = await client.post(SESSIONS, json=body, headers=headers)
    return resp.status, await resp.json(), resp.headers


def assert_error(status: int, body: Any, want_status: int, code: str) -> None:
    assert status == want_status, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
    assert body["error"]["code"] == code, body
