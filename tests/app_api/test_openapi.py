"""The app API's part of /openapi.json is valid and real responses match it."""

from __future__ import annotations

import uuid
from typing import Any

from openapi_spec_validator import validate as validate_spec

from relay.app_api import admin
from tests.app_api.conftest import build_env
from tests.foundation.test_openapi import Contract

TOKEN = "admin-" + "t" * 40


async def test_app_responses_match_the_document(sqlite_db, make_app) -> None:  # noqa: ANN001
    env = await build_env(sqlite_db, make_app, admin_token=TOKEN)
    doc = await (await env.client.get("/openapi.json")).json()
    validate_spec(doc)
    contract = Contract(doc)

    async def call(method: str, path: str, expect: int, **kw: Any) -> Any:
        resp = await env.client.request(method, path, **kw)
        assert resp.status == expect, (method, path, resp.status, await resp.text())
        body = await resp.json() if resp.content_type == "application/json" else None
        if body is not None:
            contract.check(method, path.split("?")[0], resp.status, body)
        return body

    h = env.a.headers()
    adm = {"Authorization": f"Bearer {TOKEN}"}
    await call("GET", "/v1/app/voices", 200, headers=h)
    voice = await call("POST", "/v1/app/voices/design", 201, headers=h,
                       json={"name": "G", "design_prompt": "calm", "language": "en"})
    await call("POST", "/v1/app/voices/design", 400, headers=h, json={"name": "G"})
    await call("GET", "/v1/app/voices", 400, headers={"X-Client-Id": env.a.client_id})
    await call("POST", f"/v1/app/text-to-speech/{voice['voice_id']}/with-timestamps", 200, headers=h,
               json={"text": "Hello there.", "output_format": "wav"})
    await call("POST", "/v1/app/text-to-speech/nope/with-timestamps", 400, headers=h, json={"text": "x"})
    await call("POST", f"/v1/app/text-to-speech/{uuid.uuid4()}/with-timestamps", 404, headers=h, json={"text": "x"})
    theirs = await call("POST", "/v1/app/voices/design", 201, headers=env.b.headers(),
                        json={"name": "B", "design_prompt": "deep"})
    await call("POST", f"/v1/app/text-to-speech/{theirs['voice_id']}/with-timestamps", 403, headers=h,
               json={"text": "x"})
    story = await call("POST", "/admin/v1/stories", 201, headers=adm,
                       json={"workspace_id": env.ws.id, "slug": "fox", "name": "Fox", "transcript": "A fox."})
    await call("POST", "/admin/v1/stories", 409, headers=adm, json={"workspace_id": env.ws.id, "slug": "fox",
                                                                    "name": "again"})
    await call("GET", "/admin/v1/stories", 200, headers=adm)
    await call("PATCH", f"/admin/v1/stories/{story['story_id']}", 200, headers=adm, json={"excerpt": "x"})
    await call("GET", "/v1/app/stories", 200, headers=h)
    await call("GET", "/v1/app/stories/fox", 200, headers=h)
    await call("GET", "/v1/app/stories/nope", 404, headers=h)
    await call("GET", "/admin/v1/voices?workspace_id=" + env.ws.id, 200, headers=adm)
    ws_voice = await call("POST", "/admin/v1/voices", 201, headers=adm,
                          json={"workspace_id": env.ws.id, "name": "N", "design_prompt": "warm"})
    await call("DELETE", f"/admin/v1/voices/{ws_voice['voice_id']}", 200, headers=adm)
    await call("DELETE", f"/admin/v1/stories/{story['story_id']}", 200, headers=adm)
    await call("GET", "/v1/app/files/x.wav?expires=1&sig=abc", 403)  # (real keys have several segments)
    usage = await call("GET", f"/admin/v1/app-usage?workspace_id={env.ws.id}", 200, headers=adm)
    assert {"app_source": None, "endpoint": "tts", "requests": 4} in usage["data"]
    assert await admin.list_stories(env.db, env.ws.id) == []
    assert len(contract.checked) >= 20
