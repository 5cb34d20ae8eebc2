"""Stories: list (slugged only, by sort_order), get by slug, read aloud to WAV; admin create/update/delete."""

from __future__ import annotations

import uuid

from relay.app_api import admin
from relay.tts.audio import median_pitch_hz
from tests.app_api.conftest import Env, error_of
from tests.app_api.helpers import decode, rms_dbfs, wav_header_fields


def pitch(wav: bytes) -> float:
    _, x, rate = decode(wav)
    f0 = median_pitch_hz((x * 32767).astype("<i2").tobytes(), rate)
    assert f0 is not None
    return f0


FOX = ("Once upon a time a little fox lived by the river. Every morning he drank the cold water. "
       "One day he met a turtle who told him about the moon.")


async def _stories(env: Env) -> dict[str, str]:
    db, ws = env.db, env.ws.id
    ids = {}
    for slug, order in (("zebra-night", 3), ("the-fox", 1), ("moon-song", 2)):
        story = await admin.create_story(db, ws, {"slug": slug, "name": slug.replace("-", " ").title(),
                                                  "transcript": FOX, "sort_order": order, "excerpt": "short",
                                                  "age_group": "3-5", "illustration_url": "https://x/i.png",
                                                  "illustration_alt": "a fox"})
        ids[slug] = story.id
    await admin.create_story(db, ws, {"name": "Draft without slug", "transcript": "draft", "sort_order": 0})
    await admin.create_story(db, env.other_ws.id, {"slug": "elsewhere", "name": "Other", "transcript": "x"})
    return ids


async def test_list_is_slugged_only_and_sorted(env: Env) -> None:
    ids = await _stories(env)
    resp = await env.client.get("/v1/app/stories", headers=env.a.headers())
    assert resp.status == 200
    cards = await resp.json()
    assert [c["slug"] for c in cards] == ["the-fox", "moon-song", "zebra-night"]
    assert set(cards[0]) == {"story_id", "slug", "name", "excerpt", "age_group", "illustration_url",
                             "illustration_alt", "sort_order"}
    assert cards[0]["story_id"] == ids["the-fox"] and cards[0]["sort_order"] == 1 and cards[0]["age_group"] == "3-5"


async def test_get_by_slug_and_not_found(env: Env) -> None:
    ids = await _stories(env)
    resp = await env.client.get("/v1/app/stories/the-fox", headers=env.a.headers())
    story = await resp.json()
    assert resp.status == 200 and story["story_id"] == ids["the-fox"] and story["transcript"] == FOX
    assert story["estimated_reading_time_seconds"] == round(len(FOX.split()) * 60 / 150)
    assert {"illustration_url", "illustration_alt", "excerpt"} <= set(story)
    for slug in ("nope", "elsewhere", "..%2F..", "x" * 300):
        resp = await env.client.get(f"/v1/app/stories/{slug}", headers=env.a.headers())
        assert await error_of(resp) == (404, "STORY_NOT_FOUND")
    resp = await env.client.post("/v1/app/stories/nope/read", headers=env.a.headers())
    assert await error_of(resp) == (404, "STORY_NOT_FOUND")


async def test_read_returns_wav_with_length_and_picks_the_voice(env: Env) -> None:
    ids = await _stories(env)
    url = "/v1/app/stories/the-fox/read"
    # no voices at all in the workspace
    resp = await env.client.post(url, headers=env.a.headers())
    assert await error_of(resp) == (400, "VOICE_NOT_AVAILABLE")
    first = await env.workspace_voice("First", "a deep old man")
    second = await env.workspace_voice("Second", "a high bright young girl")
    # the workspace's first voice, no body at all
    resp = await env.client.post(url, headers=env.a.headers())
    assert resp.status == 200 and resp.content_type == "audio/wav"
    data = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(data)
    assert wav_header_fields(data)["bits"] == 16
    fmt, x, rate = decode(data)
    assert fmt == "wav" and len(x) / rate > 5 and rms_dbfs(x) > -30
    # the story's default voice wins over the first voice
    await admin.update_story(env.db, ids["the-fox"], {"default_voice_id": second.id})
    default_read = await (await env.client.post(url, headers=env.a.headers(), json={})).read()
    # the body's voice wins over the default
    body_read = await (await env.client.post(url, headers=env.a.headers(), json={"voice_id": first.id})).read()
    # which voice spoke is audible: "a deep old man" vs "a high bright young girl"
    assert pitch(data) < 150 < 180 < pitch(default_read)
    assert pitch(body_read) < 150
    # body voice rules
    resp = await env.client.post(url, headers=env.a.headers(), json={"voice_id": "nope"})
    assert await error_of(resp) == (400, "INVALID_VOICE_ID")
    resp = await env.client.post(url, headers=env.a.headers(), json={"voice_id": str(uuid.uuid4())})
    assert await error_of(resp) == (404, "VOICE_NOT_FOUND")
    theirs = (await env.design(env.b, "B's"))["voice_id"]
    resp = await env.client.post(url, headers=env.a.headers(), json={"voice_id": theirs})
    assert await error_of(resp) == (403, "VOICE_NOT_AVAILABLE")


async def test_long_story_is_read_in_chunks(env_sqlite: Env) -> None:
    env = env_sqlite
    text = " ".join([FOX] * 25)  # ~3,500 characters: several synthesis chunks
    await admin.create_story(env.db, env.ws.id, {"slug": "long", "name": "Long", "transcript": text})
    await env.workspace_voice()
    resp = await env.client.post("/v1/app/stories/long/read", headers=env.a.headers())
    assert resp.status == 200
    fmt, x, rate = decode(await resp.read())
    seconds = len(x) / rate
    short = await admin.create_story(env.db, env.ws.id, {"slug": "short", "name": "S", "transcript": FOX})
    assert short
    one = decode(await (await env.client.post("/v1/app/stories/short/read", headers=env.a.headers())).read())
    assert 20 * len(one[1]) / one[2] < seconds < 30 * len(one[1]) / one[2]


async def test_admin_story_rules(env: Env) -> None:
    await _stories(env)
    import pytest

    with pytest.raises(admin.AdminError) as e:
        await admin.create_story(env.db, env.ws.id, {"slug": "the-fox", "name": "dup"})
    assert e.value.status == 409
    with pytest.raises(admin.AdminError) as e:
        await admin.create_story(env.db, env.ws.id, {"slug": "Bad Slug!", "name": "x"})
    assert e.value.status == 400
    with pytest.raises(admin.AdminError) as e:
        await admin.create_story(env.db, env.ws.id, {"slug": "ok", "name": "x", "default_voice_id": str(uuid.uuid4())})
    assert (e.value.status, e.value.code) == (404, "voice_not_found")  # a reference to nothing, as elsewhere
    # the same slug in another workspace is fine
    await admin.create_story(env.db, env.other_ws.id, {"slug": "the-fox", "name": "other fox"})
    # clearing the slug hides a story from the app
    fox = [s for s in await admin.list_stories(env.db, env.ws.id) if s.slug == "the-fox"][0]
    await admin.update_story(env.db, fox.id, {"slug": ""})
    cards = await (await env.client.get("/v1/app/stories", headers=env.a.headers())).json()
    assert "the-fox" not in [c["slug"] for c in cards]
    await admin.delete_story(env.db, fox.id)
    with pytest.raises(admin.AdminError):
        await admin.delete_story(env.db, fox.id)
