"""POST /v1/app/text-to-speech/{voice_id}/with-timestamps against the running app (real espeak-ng audio)."""

from __future__ import annotations

import uuid

import numpy as np

from relay.tts.timing import tokenise
from tests.app_api.conftest import Env, error_of
from tests.app_api.helpers import decode, rms_dbfs

TEXT = "Hello from relay. The quick brown fox, a naive cafe owner, jumps over 42 lazy dogs!"


def tts_path(voice_id: str) -> str:
    return f"/v1/app/text-to-speech/{voice_id}/with-timestamps"


async def _tts(env: Env, voice_id: str, device=None, **body) -> tuple[int, dict]:  # noqa: ANN001
    resp = await env.client.post(tts_path(voice_id), headers=(device or env.a).headers(), json=body)
    return resp.status, await resp.json()


async def _audio(env: Env, url: str) -> bytes:
    resp = await env.client.session.get(url)
    assert resp.status == 200, await resp.text()
    return await resp.read()


def _check_timings(body: dict, samples: np.ndarray, rate: int, text: str) -> None:
    duration = len(samples) / rate
    assert abs(body["duration_seconds"] - duration) < 0.06, (body["duration_seconds"], duration)
    ts = body["timestamps"]
    assert [t["word"] for t in ts] == [t.word for t in tokenise(text)]  # every word, in order
    prev_end = 0
    for t in ts:
        assert t["start_ms"] < t["end_ms"] <= duration * 1000 + 1
        assert t["start_ms"] >= prev_end - 1  # no overlaps, monotonic
        prev_end = t["end_ms"]
        seg = samples[int(t["start_ms"] * rate / 1000): int(t["end_ms"] * rate / 1000)]
        assert rms_dbfs(seg) > -40, (t, rms_dbfs(seg))  # each word's span has speech energy
    # the words span most of the audio (espeak adds little leading/trailing silence)
    assert ts[-1]["end_ms"] > 0.8 * duration * 1000


async def test_wav_with_word_timestamps_matches_the_audio(env: Env) -> None:
    voice = await env.workspace_voice()
    status, body = await _tts(env, voice.id, text=TEXT, output_format="wav_24000")
    assert status == 200, body
    assert set(body) == {"audio_url", "expires_in", "duration_seconds", "timestamps", "full_text"}
    assert body["full_text"] == TEXT and body["expires_in"] == 300
    data = await _audio(env, body["audio_url"])
    fmt, samples, rate = decode(data)
    assert fmt == "wav" and data[:4] == b"RIFF"
    _check_timings(body, samples, rate, TEXT)
    assert rms_dbfs(samples) > -30


async def test_mp3_is_valid_mp3_with_matching_timestamps(env_sqlite: Env) -> None:
    env = env_sqlite
    voice = await env.workspace_voice()
    status, body = await _tts(env, voice.id, text=TEXT, output_format="mp3_44100_128", speed=1.0, stability=0.75)
    assert status == 200, body
    resp = await env.client.session.get(body["audio_url"])
    assert resp.content_type == "audio/mpeg"
    fmt, samples, rate = decode(await resp.read())
    assert fmt == "mp3" and rate == 44100
    _check_timings(body, samples, rate, TEXT)


async def test_default_format_is_mp3_and_speed_changes_duration(env_sqlite: Env) -> None:
    env = env_sqlite
    voice = await env.workspace_voice()
    _, normal = await _tts(env, voice.id, text=TEXT)
    _, fast = await _tts(env, voice.id, text=TEXT, speed=2.0, output_format="pcm_wav")
    assert decode(await _audio(env, normal["audio_url"]))[0] == "mp3"
    assert decode(await _audio(env, fast["audio_url"]))[0] == "wav"
    assert fast["duration_seconds"] < 0.7 * normal["duration_seconds"]


async def test_long_text_is_chunked_and_timestamps_stay_continuous(env_sqlite: Env) -> None:
    env = env_sqlite
    voice = await env.workspace_voice()
    text = " ".join(f"Sentence number {i} is about a small red boat on the sea." for i in range(1, 60))
    assert len(text) > 2 * 1200  # several engine chunks
    status, body = await _tts(env, voice.id, text=text, output_format="wav")
    assert status == 200
    _, samples, rate = decode(await _audio(env, body["audio_url"]))
    _check_timings(body, samples, rate, text)


async def test_text_rules(env: Env) -> None:
    voice = await env.workspace_voice()
    assert await error_of(await env.client.post(tts_path(voice.id), headers=env.a.headers(),
                                                json={"text": "x" * 15_001})) == (400, "TEXT_TOO_LONG")
    for text in ("", "   \n ", None):
        resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), json={"text": text})
        assert await error_of(resp) == (400, "EMPTY_TEXT")
    resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), json={"text": "hi", "speed": 99})
    assert await error_of(resp) == (400, "INVALID_SPEED")
    resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), json={"text": "hi", "stability": "x"})
    assert await error_of(resp) == (400, "INVALID_STABILITY")
    resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), data=b"{not json",
                                 )
    assert (await error_of(resp))[0] in (400, 415)


async def test_voice_visibility_matrix(env: Env) -> None:
    ws_voice = await env.workspace_voice()
    mine = (await env.design(env.a, "A's voice"))["voice_id"]
    theirs = (await env.design(env.b, "B's voice"))["voice_id"]
    elsewhere = await env.workspace_voice("far away", workspace_id=env.other_ws.id)
    assert (await _tts(env, ws_voice.id, text="hi"))[0] == 200          # workspace voice
    assert (await _tts(env, mine, text="hi"))[0] == 200                 # own clone
    assert (await _tts(env, ws_voice.id, env.b, text="hi"))[0] == 200   # workspace voice, other device
    resp = await env.client.post(tts_path(theirs), headers=env.a.headers(), json={"text": "hi"})
    assert await error_of(resp) == (403, "VOICE_NOT_AVAILABLE")        # another client's clone
    resp = await env.client.post(tts_path(elsewhere.id), headers=env.a.headers(), json={"text": "hi"})
    assert await error_of(resp) == (404, "VOICE_NOT_FOUND")            # another workspace's voice
    resp = await env.client.post(tts_path(str(uuid.uuid4())), headers=env.a.headers(), json={"text": "hi"})
    assert await error_of(resp) == (404, "VOICE_NOT_FOUND")
    for bad in ("not-a-uuid", "1234", "550e8400e29b41d4a716446655440000x"):
        resp = await env.client.post(tts_path(bad), headers=env.a.headers(), json={"text": "hi"})
        assert await error_of(resp) == (400, "INVALID_VOICE_ID")


async def test_busy_pool_answers_503_tts_busy(env_sqlite: Env) -> None:
    env = env_sqlite
    voice = await env.workspace_voice()
    pool = env.services.pool
    held = []
    for _ in range(pool.capacity):
        cm = pool.admit()
        await cm.__aenter__()
        held.append(cm)
    try:
        resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), json={"text": "hello"})
        assert await error_of(resp) == (503, "TTS_BUSY")
        assert resp.headers["Retry-After"]
    finally:
        for cm in held:
            await cm.__aexit__(None, None, None)
    assert (await _tts(env, voice.id, text="hello"))[0] == 200


async def test_adapter_not_configured(sqlite_db, make_app) -> None:  # noqa: ANN001
    from tests.app_api.conftest import build_env

    env = await build_env(sqlite_db, make_app, tts_engine="qwen3")
    from relay.store import app_voices

    voice = await app_voices.create(sqlite_db, workspace_id=env.ws.id, category="workspace", kind="design",
                                    name="v", design_prompt="calm")
    resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), json={"text": "hi"})
    assert await error_of(resp) == (503, "ADAPTER_NOT_CONFIGURED")
    resp = await env.client.post("/v1/app/voices/design", headers=env.a.headers(),
                                 json={"name": "x", "design_prompt": "calm"})
    assert await error_of(resp) == (503, "ADAPTER_NOT_CONFIGURED")


async def test_one_device_cannot_take_every_slot(env_sqlite: Env) -> None:
    env = env_sqlite
    voice = await env.workspace_voice()
    services = env.services
    held = []
    for _ in range(services.settings.tts_per_client):  # this device's requests in flight
        cm = services.admit(env.a.client_id)
        await cm.__aenter__()
        held.append(cm)
    try:
        resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), json={"text": "hello"})
        assert await error_of(resp) == (429, "RATE_LIMITED")
        assert (await _tts(env, voice.id, env.b, text="hello"))[0] == 200  # another device is not affected
    finally:
        for cm in held:
            await cm.__aexit__(None, None, None)
    assert services.per_client == {}
    assert (await _tts(env, voice.id, text="hello"))[0] == 200


async def test_a_dead_worker_fails_one_request_then_the_pool_recovers(env_sqlite: Env) -> None:
    import asyncio
    import os
    import signal

    env = env_sqlite
    voice = await env.workspace_voice()
    assert (await _tts(env, voice.id, text="warm up"))[0] == 200
    executor = env.services.pool._executor
    assert executor is not None
    for pid in list(executor._processes):  # the worker processes this test's app started
        os.kill(pid, signal.SIGKILL)
    for _ in range(200):  # the executor notices the death on its management thread
        if executor._broken:
            break
        await asyncio.sleep(0.01)
    assert executor._broken
    resp = await env.client.post(tts_path(voice.id), headers=env.a.headers(), json={"text": "hello"})
    assert await error_of(resp) == (502, "TTS_FAILED")
    status, body = await _tts(env, voice.id, text="hello again")
    assert status == 200 and [t["word"] for t in body["timestamps"]] == ["hello", "again"]
