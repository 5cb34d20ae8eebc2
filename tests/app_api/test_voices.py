"""GET /v1/app/voices, POST /v1/app/voices/clone and /design against the running app."""

from __future__ import annotations

import aiohttp
import numpy as np
import pytest

from relay.store import app_voices as voices_repo
from tests.app_api.conftest import Env, error_of
from tests.app_api.helpers import decode, encode_with, rms_dbfs, silence_wav, speech_pcm, wav_bytes


def clone_form(audio: bytes | None, name: str | None = "My voice", filename: str = "ref.wav",
               description: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    if name is not None:
        form.add_field("name", name)
    if description is not None:
        form.add_field("description", description)
    if audio is not None:
        form.add_field("audio_file", audio, filename=filename, content_type="application/octet-stream")
    return form


async def test_auth_is_required_and_errors_use_the_detail_shape(env: Env) -> None:
    c = env.client
    h = env.a.headers()
    del h["X-Workspace-Key"]
    assert await error_of(await c.get("/v1/app/voices", headers=h)) == (400, "MISSING_HEADER")
    assert await error_of(await c.get("/v1/app/voices", headers=env.a.headers(**{"X-Workspace-Key": "rwk_nope"}))) \
        == (401, "INVALID_WORKSPACE_KEY")
    bad = env.a.headers(**{"X-Client-Secret": "x" * 40})
    await c.get("/v1/app/voices", headers=env.a.headers())  # enrols the real secret (TOFU)
    assert await error_of(await c.get("/v1/app/voices", headers=bad)) == (401, "INVALID_SECRET")
    # a device of another workspace with this workspace's key
    wrong = env.other.headers(**{"X-Workspace-Key": env.key})
    assert (await error_of(await c.get("/v1/app/voices", headers=wrong)))[0] == 401


async def test_list_shows_workspace_voices_and_own_clones_only(env: Env) -> None:
    ws_voice = await env.workspace_voice()
    mine = await env.design(env.a, "Mine")
    theirs = await env.design(env.b, "Theirs")
    await env.workspace_voice("Other workspace voice", workspace_id=env.other_ws.id)
    resp = await env.client.get("/v1/app/voices", headers=env.a.headers())
    assert resp.status == 200
    voices = (await resp.json())["voices"]
    by_id = {v["voice_id"]: v for v in voices}
    assert set(by_id) == {ws_voice.id, mine["voice_id"]}
    assert by_id[ws_voice.id]["category"] == "workspace"
    assert by_id[mine["voice_id"]]["category"] == "cloned"
    assert voices[0]["voice_id"] == ws_voice.id  # workspace voices first
    assert theirs["voice_id"] not in by_id
    # the preview is a real, fetchable WAV of speech
    preview = await env.client.session.get(by_id[ws_voice.id]["preview_url"])
    assert preview.status == 200 and preview.content_type == "audio/wav"
    fmt, x, rate = decode(await preview.read())
    assert fmt == "wav" and len(x) / rate > 3 and rms_dbfs(x) > -35


async def test_design_creates_a_ready_voice_and_needs_a_prompt(env: Env) -> None:
    body = await env.design(env.a, "Friendly guide", "Warm, calm adult voice suitable for bedtime stories.")
    assert set(body) == {"voice_id", "name", "status", "preview_url"}
    assert body["name"] == "Friendly guide" and body["status"] == "ready"
    row = await voices_repo.get(env.db, body["voice_id"])
    assert row.kind == "design" and row.client_id == env.a.client_id and row.params["rate_wpm"] < 165
    for payload in ({"name": "x"}, {"name": "x", "design_prompt": "   "}):
        resp = await env.client.post("/v1/app/voices/design", headers=env.a.headers(), json=payload)
        assert await error_of(resp) == (400, "MISSING_DESIGN_PROMPT")
    resp = await env.client.post("/v1/app/voices/design", headers=env.a.headers(), data=b"[1]",
                                 )
    assert (await error_of(resp))[0] in (400, 415)


async def test_clone_from_wav_and_mp3_is_transcribed_stored_and_listed(env_sqlite: Env) -> None:
    env = env_sqlite
    pcm, rate = speech_pcm(14.0, pitch=80)
    for audio, fname in ((wav_bytes(pcm, rate), "ref.wav"), (encode_with(pcm, rate, "mp3", "libmp3lame"), "r.mp3")):
        resp = await env.client.post("/v1/app/voices/clone", headers=env.a.headers(X_App_Source="ios"),
                                     data=clone_form(audio, filename=fname, description="kitchen"))
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["name"] == "My voice" and body["status"] == "ready" and body["preview_url"]
        row = await voices_repo.get(env.db, body["voice_id"])
        assert row.category == "cloned" and row.kind == "clone" and row.description == "kitchen"
        assert row.transcript.strip()  # pocketsphinx recognised something
        # the reference was converted to WAV server-side, 14 s long
        ref = await env.services.storage.get(row.reference_key)
        fmt, x, r = decode(ref.data)
        assert fmt == "wav" and abs(len(x) / r - 14.0) < 0.2
    listed = (await (await env.client.get("/v1/app/voices", headers=env.a.headers())).json())["voices"]
    assert [v["category"] for v in listed] == ["cloned", "cloned"]


async def test_clone_accepts_ogg_opus_flac_and_m4a(env_sqlite: Env) -> None:
    env = env_sqlite
    pcm, rate = speech_pcm(11.0)
    for audio in (encode_with(pcm, rate, "ogg", "libopus"), encode_with(pcm, rate, "flac", "flac"),
                  encode_with(pcm, rate, "ipod", "aac")):
        resp = await env.client.post("/v1/app/voices/clone", headers=env.a.headers(), data=clone_form(audio))
        assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(("seconds", "code"), [(5.0, "AUDIO_TOO_SHORT"), (9.8, "AUDIO_TOO_SHORT"),
                                                (31.0, "AUDIO_TOO_LONG"), (45.0, "AUDIO_TOO_LONG")])
async def test_clone_duration_rules(env_sqlite: Env, seconds: float, code: str) -> None:
    pcm, rate = speech_pcm(seconds)
    resp = await env_sqlite.client.post("/v1/app/voices/clone", headers=env_sqlite.a.headers(),
                                        data=clone_form(wav_bytes(pcm, rate)))
    assert await error_of(resp) == (400, code)


async def test_clone_bad_input(env_sqlite: Env) -> None:
    env = env_sqlite
    post = env.client.post
    h = env.a.headers()
    assert await error_of(await post("/v1/app/voices/clone", headers=h, data=clone_form(b""))) == (400, "EMPTY_AUDIO")
    assert await error_of(await post("/v1/app/voices/clone", headers=h, data=clone_form(silence_wav(15)))) \
        == (400, "EMPTY_AUDIO")
    assert await error_of(await post("/v1/app/voices/clone", headers=h, data=clone_form(b"\x00not audio" * 500))) \
        == (400, "INVALID_AUDIO")
    assert await error_of(await post("/v1/app/voices/clone", headers=h, data=clone_form(None))) \
        == (400, "MISSING_AUDIO_FILE")
    pcm, rate = speech_pcm(12)
    assert await error_of(await post("/v1/app/voices/clone", headers=h,
                                     data=clone_form(wav_bytes(pcm, rate), name=None))) == (400, "MISSING_NAME")
    assert await error_of(await post("/v1/app/voices/clone", headers=h, json={"name": "x"})) \
        == (415, "UNSUPPORTED_MEDIA_TYPE")
    # 12 s of white noise: audible, long enough, but no speech -> the embedded recogniser finds nothing
    noise = np.random.default_rng(1).normal(0, 3000, 24000 * 12).astype("<i2").tobytes()
    assert await error_of(await post("/v1/app/voices/clone", headers=h, data=clone_form(wav_bytes(noise, 24000)))) \
        == (422, "TRANSCRIPTION_FAILED")
    # the app still works after all that
    assert (await env.client.get("/v1/app/voices", headers=h)).status == 200


async def test_clone_upload_over_the_limit_is_413(sqlite_db, make_app) -> None:  # noqa: ANN001
    from tests.app_api.conftest import build_env

    env = await build_env(sqlite_db, make_app, max_upload_bytes=200_000)
    pcm, rate = speech_pcm(12)  # ~530 kB as WAV
    resp = await env.client.post("/v1/app/voices/clone", headers=env.a.headers(), data=clone_form(wav_bytes(pcm, rate)))
    assert await error_of(resp) == (413, "REQUEST_TOO_LARGE")

    # the same body chunked (no Content-Length): the limit is enforced while reading
    form = clone_form(wav_bytes(pcm, rate))
    payload = form()
    resp = await env.client.post("/v1/app/voices/clone",
                                 headers={**env.a.headers(), "Content-Type": payload.content_type},
                                 data=_stream(payload))
    assert await error_of(resp) == (413, "REQUEST_TOO_LARGE")


async def _stream(payload):  # noqa: ANN001, ANN202
    parts: list[bytes] = []

    class W:
        async def write(self, b: bytes) -> None:
            parts.append(bytes(b))

    await payload.write(W())
    data = b"".join(parts)
    for i in range(0, len(data), 65536):
        yield data[i: i + 65536]


async def test_storage_failure_is_storage_error(env_sqlite: Env) -> None:
    env = env_sqlite
    files = env.services.storage.root
    files.mkdir(parents=True, exist_ok=True)
    (files / "voices").write_bytes(b"not a directory")  # makes every voice write fail
    resp = await env.client.post("/v1/app/voices/design", headers=env.a.headers(),
                                 json={"name": "x", "design_prompt": "a deep male voice"})
    assert await error_of(resp) == (500, "STORAGE_ERROR")
    pcm, rate = speech_pcm(11.0)
    resp = await env.client.post("/v1/app/voices/clone", headers=env.a.headers(), data=clone_form(wav_bytes(pcm, rate)))
    assert await error_of(resp) == (500, "STORAGE_ERROR")
    assert (await env.client.get("/v1/app/voices", headers=env.a.headers())).status == 200
    assert (await (await env.client.get("/v1/app/voices", headers=env.a.headers())).json())["voices"] == []
    # synthesised audio cannot be stored either
    (files / "voices").unlink()
    voice = await env.workspace_voice()
    (files / "tts").write_bytes(b"not a directory")
    resp = await env.client.post(f"/v1/app/text-to-speech/{voice.id}/with-timestamps", headers=env.a.headers(),
                                 json={"text": "hello"})
    assert await error_of(resp) == (500, "STORAGE_ERROR")


async def test_x_app_source_is_recorded(env: Env) -> None:
    await env.client.get("/v1/app/voices", headers=env.a.headers(**{"X-App-Source": "kids-ios/2.1"}))
    await env.client.get("/v1/app/stories", headers=env.a.headers(**{"X-App-Source": "kids-ios/2.1"}))
    await env.client.get("/v1/app/voices", headers=env.b.headers())
    rows = await env.db.fetchall("SELECT client_id, app_source, endpoint, status FROM app_requests ORDER BY at")
    assert [(r["app_source"], r["endpoint"], r["status"]) for r in rows] == [
        ("kids-ios/2.1", "voices.list", 200), ("kids-ios/2.1", "stories.list", 200), (None, "voices.list", 200)]
    assert rows[0]["client_id"] == env.a.client_id


async def test_demo_devices_have_no_app_api(sqlite_db, make_app) -> None:  # noqa: ANN001
    from tests.app_api.conftest import build_env

    env = await build_env(sqlite_db, make_app, demo_mode=True)
    resp = await env.client.get("/v1/app/voices", headers={"X-Demo-Mode": "true", "X-Client-Id": "demo-1"})
    assert await error_of(resp) == (403, "WORKSPACE_REQUIRED")
