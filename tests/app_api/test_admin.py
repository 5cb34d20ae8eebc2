"""Admin operations of the app API: the admin HTTP API (/admin/v1) and the `relay admin` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from relay.cli import main as relay_main
from tests.app_api.conftest import Env, build_env, error_of
from tests.app_api.helpers import speech_pcm, wav_bytes
from tests.conftest import create_database

TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture
async def aenv(db, make_app) -> Env:  # noqa: ANN001
    return await build_env(db, make_app, admin_token=TOKEN)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_admin_http_stories_crud(aenv: Env) -> None:
    c = aenv.client
    assert (await c.get("/admin/v1/stories")).status == 401
    voice = await c.post("/admin/v1/voices", headers=auth(),
                         json={"workspace_id": aenv.ws.id, "name": "Narrator", "design_prompt": "calm bedtime voice"})
    assert voice.status == 201, await voice.text()
    vid = (await voice.json())["voice_id"]
    resp = await c.post("/admin/v1/stories", headers=auth(), json={
        "workspace_id": aenv.ws.id, "slug": "the-fox", "name": "The fox", "transcript": "A fox. The end.",
        "excerpt": "A fox", "age_group": "3-5", "illustration_url": "https://img/fox.png", "illustration_alt": "fox",
        "sort_order": 2, "default_voice_id": vid})
    assert resp.status == 201, await resp.text()
    story = await resp.json()
    assert story["default_voice_id"] == vid and story["sort_order"] == 2
    resp = await c.patch(f"/admin/v1/stories/{story['story_id']}", headers=auth(), json={"name": "The red fox"})
    assert (await resp.json())["name"] == "The red fox"
    cards = await (await c.get("/v1/app/stories", headers=aenv.a.headers())).json()
    assert [(s["slug"], s["name"]) for s in cards] == [("the-fox", "The red fox")]
    listed = await (await c.get(f"/admin/v1/stories?workspace_id={aenv.ws.id}", headers=auth())).json()
    assert [s["story_id"] for s in listed["data"]] == [story["story_id"]]
    resp = await c.post("/admin/v1/stories", headers=auth(), json={"workspace_id": aenv.ws.id, "slug": "the-fox",
                                                                   "name": "dup"})
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "slug_taken"
    resp = await c.post("/admin/v1/stories", headers=auth(), json={"workspace_id": aenv.ws.id, "name": "x",
                                                                   "bogus": 1})
    assert resp.status == 400
    assert (await c.delete(f"/admin/v1/stories/{story['story_id']}", headers=auth())).status == 200
    assert (await c.delete(f"/admin/v1/stories/{story['story_id']}", headers=auth())).status == 404
    resp = await c.get("/v1/app/stories/the-fox", headers=aenv.a.headers())
    assert await error_of(resp) == (404, "STORY_NOT_FOUND")


async def test_admin_http_workspace_voices(aenv: Env) -> None:
    c = aenv.client
    pcm, rate = speech_pcm(12.0)
    form = aiohttp.FormData()
    form.add_field("workspace_id", aenv.ws.id)
    form.add_field("name", "Grandma")
    form.add_field("audio_file", wav_bytes(pcm, rate), filename="g.wav")
    resp = await c.post("/admin/v1/voices", headers=auth(), data=form)
    assert resp.status == 201, await resp.text()
    grandma = await resp.json()
    assert grandma["category"] == "workspace" and grandma["kind"] == "clone" and grandma["transcript"]
    # every device of the workspace sees it as a workspace voice
    for dev in (aenv.a, aenv.b):
        voices = (await (await c.get("/v1/app/voices", headers=dev.headers())).json())["voices"]
        assert [(v["voice_id"], v["category"]) for v in voices] == [(grandma["voice_id"], "workspace")]
    resp = await c.post("/admin/v1/voices", headers=auth(), json={"workspace_id": aenv.ws.id, "name": "x"})
    assert resp.status == 400
    short = aiohttp.FormData()
    short.add_field("name", "Short")
    short.add_field("audio_file", wav_bytes(*speech_pcm(3.0)), filename="s.wav")
    resp = await c.post("/admin/v1/voices", headers=auth(), data=short)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "audio_too_short"
    resp = await c.patch(f"/admin/v1/voices/{grandma['voice_id']}", headers=auth(), json={"name": "Nana"})
    assert (await resp.json())["name"] == "Nana"
    assert (await c.delete(f"/admin/v1/voices/{grandma['voice_id']}", headers=auth())).status == 200
    assert (await (await c.get("/v1/app/voices", headers=aenv.a.headers())).json())["voices"] == []


async def test_admin_http_errors_carry_the_operations_message_and_code(aenv: Env) -> None:
    # AdminError (and the AppError of a voice operation under it) answered in the admin API's shape, to the byte
    c = aenv.client

    async def body(resp: aiohttp.ClientResponse) -> tuple[int, bytes]:
        return resp.status, await resp.read()

    resp = await c.post("/admin/v1/stories", headers=auth(), json={"workspace_id": "nope", "name": "x"})
    assert await body(resp) == (404, b'{"error":{"message":"workspace nope not found","type":"not_found_error",'
                                     b'"code":"workspace_not_found"}}')
    resp = await c.post("/admin/v1/voices", headers=auth(), json={"workspace_id": aenv.ws.id, "name": "x"})
    assert await body(resp) == (400, b'{"error":{"message":"give exactly one of design_prompt or audio",'
                                     b'"type":"invalid_request_error","code":"invalid_voice"}}')
    short = aiohttp.FormData()
    short.add_field("workspace_id", aenv.ws.id)
    short.add_field("name", "Short")
    short.add_field("audio_file", wav_bytes(*speech_pcm(3.0)), filename="s.wav")
    status, raw = await body(await c.post("/admin/v1/voices", headers=auth(), data=short))
    error = json.loads(raw)["error"]
    assert (status, error["code"], error["type"]) == (400, "audio_too_short", "invalid_request_error")
    assert error["message"].startswith("Audio is ") and error["message"].endswith("; at least 10 s is required")


def test_cli_stories_and_voices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RELAY_DATA_DIR", str(tmp_path / "data"))
    create_database(tmp_path / "data")  # what the first `relay serve` does; admin commands never create one

    def run(*argv: str) -> object:
        code = relay_main(["admin", "--json", *argv])
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    voice = run("voices", "create", "--name", "Narrator", "--design-prompt", "a calm deep voice")
    assert voice["category"] == "workspace" and voice["workspace_id"] == "default"
    text = tmp_path / "fox.txt"
    text.write_text("Once upon a time there was a fox.", encoding="utf-8")
    story = run("stories", "create", "--name", "Fox", "--slug", "fox", "--file", str(text), "--sort-order", "3",
                "--default-voice", voice["voice_id"])
    assert story["transcript"].startswith("Once") and story["default_voice_id"] == voice["voice_id"]
    story = run("stories", "update", story["story_id"], "--excerpt", "A fox", "--default-voice", "none")
    assert story["excerpt"] == "A fox" and story["default_voice_id"] is None
    assert [s["slug"] for s in run("stories", "list")] == ["fox"]
    assert [v["name"] for v in run("voices", "list")] == ["Narrator"]
    assert run("stories", "delete", story["story_id"])["deleted"] is True
    assert relay_main(["admin", "stories", "show", story["story_id"]]) == 1
    assert "not found" in capsys.readouterr().err
    assert run("voices", "delete", voice["voice_id"])["deleted"] is True
