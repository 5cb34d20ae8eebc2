"""Contract test of the Qwen3-TTS adapter client against a local fake of the adapter service,
and of the OpenAI-compatible transcription client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relay.store import app_voices as voices_repo
from tests.app_api.conftest import Env, build_env, error_of
from tests.app_api.fake_services import ADAPTER_KEY, LEAD_SILENCE_MS, FakeAdapter, FakeTranscriber
from tests.app_api.helpers import decode, rms_dbfs, speech_pcm, wav_bytes
from tests.app_api.test_tts import tts_path
from tests.app_api.test_voices import clone_form

TEXT = "Good night little fox, sleep well by the quiet river."


@pytest.fixture
async def adapter() -> AsyncIterator[FakeAdapter]:
    fake = FakeAdapter()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def qenv(sqlite_db, make_app, adapter: FakeAdapter) -> Env:  # noqa: ANN001
    url = str(adapter.server.make_url("")).rstrip("/")  # type: ignore[union-attr]
    return await build_env(sqlite_db, make_app, tts_engine="qwen3", tts_adapter_url=url, tts_adapter_key=ADAPTER_KEY)


async def _speak(env: Env, voice_id: str, **body) -> tuple[int, dict]:  # noqa: ANN003
    resp = await env.client.post(tts_path(voice_id), headers=env.a.headers(), json={"text": TEXT, **body})
    return resp.status, await resp.json()


async def _check_audio_and_estimated_timings(env: Env, body: dict) -> None:
    resp = await env.client.session.get(body["audio_url"])
    fmt, x, rate = decode(await resp.read())
    duration_ms = len(x) / rate * 1000
    assert abs(body["duration_seconds"] * 1000 - duration_ms) < 60
    ts = body["timestamps"]
    assert [t["word"] for t in ts] == ["Good", "night", "little", "fox", "sleep", "well", "by", "the", "quiet",
                                       "river"]
    # stretched onto where the adapter's audio has speech: after its leading silence, before the trailing one
    assert LEAD_SILENCE_MS - 40 <= ts[0]["start_ms"] <= LEAD_SILENCE_MS + 80
    assert duration_ms - LEAD_SILENCE_MS - 80 <= ts[-1]["end_ms"] <= duration_ms - LEAD_SILENCE_MS + 40
    for prev, cur in zip(ts, ts[1:], strict=False):
        assert prev["start_ms"] < prev["end_ms"] <= cur["start_ms"] + 1
    speech = x[int(ts[0]["start_ms"] * rate / 1000): int(ts[-1]["end_ms"] * rate / 1000)]
    assert rms_dbfs(speech) > -30


async def test_design_through_the_adapter(qenv: Env, adapter: FakeAdapter) -> None:
    body = await qenv.design(qenv.a, "Guide", "Warm, calm adult voice")
    assert adapter.calls[0] == ("design", {"name": "Guide", "prompt": "Warm, calm adult voice", "language": "en"})
    row = await voices_repo.get(qenv.db, body["voice_id"])
    assert row.engine_ref == {"voice_clone_prompt": "prompts/1.pt"}
    preview = await qenv.client.session.get(body["preview_url"])
    assert decode(await preview.read())[0] == "wav"  # the adapter's materialised reference audio
    status, tts = await _speak(qenv, body["voice_id"], output_format="mp3_44100_128", speed=1.0, stability=0.5)
    assert status == 200, tts
    assert adapter.calls[-1] == ("tts", {"text": TEXT, "language": "en", "speed": 1.0, "stability": 0.5,
                                         "voice_clone_prompt": "prompts/1.pt"})
    await _check_audio_and_estimated_timings(qenv, tts)


async def test_clone_sends_reference_and_transcript_then_speaks(qenv: Env, adapter: FakeAdapter) -> None:
    pcm, rate = speech_pcm(12.0)
    resp = await qenv.client.post("/v1/app/voices/clone", headers=qenv.a.headers(),
                                  data=clone_form(wav_bytes(pcm, rate)))
    assert resp.status == 201, await resp.text()
    voice_id = (await resp.json())["voice_id"]
    kind, call = adapter.calls[0]
    assert kind == "clone" and call["transcript"] and abs(call["seconds"] - 12.0) < 0.1
    row = await voices_repo.get(qenv.db, voice_id)
    assert row.engine_ref == {"profile_id": "prof_1"} and row.transcript == call["transcript"]
    status, tts = await _speak(qenv, voice_id, output_format="wav")
    assert status == 200, tts
    assert adapter.calls[-1][1]["profile_id"] == "prof_1"
    await _check_audio_and_estimated_timings(qenv, tts)

    # the adapter lost its profiles (restart): relay re-registers the voice once and carries on
    adapter.profiles.clear()
    status, tts = await _speak(qenv, voice_id)
    assert status == 200
    assert [k for k, _ in adapter.calls].count("clone") == 2
    assert (await voices_repo.get(qenv.db, voice_id)).engine_ref == {"profile_id": "prof_1"}


async def test_voice_made_before_the_adapter_is_synced_on_first_use(qenv: Env, adapter: FakeAdapter) -> None:
    from relay.app_api.admin import create_workspace_voice
    from relay.app_api.services import build_services

    # a workspace voice created while the embedded espeak engine was configured (no adapter registration)
    espeak_services = await build_services(qenv.services.settings.__class__(
        **{**qenv.services.settings.__dict__, "tts_engine": "espeak"}), qenv.db)
    try:
        voice = await create_workspace_voice(qenv.db, espeak_services, qenv.ws.id, name="Old",
                                             design_prompt="an old storyteller")
    finally:
        await espeak_services.close()
    assert voice.engine_ref == {}
    status, body = await _speak(qenv, voice.id)
    assert status == 200, body
    assert adapter.calls[0][0] == "design"  # a designed voice is re-designed from its stored prompt
    assert (await voices_repo.get(qenv.db, voice.id)).engine_ref == {"voice_clone_prompt": "prompts/1.pt"}


async def test_adapter_failures_map_to_documented_codes(qenv: Env, adapter: FakeAdapter) -> None:
    synced = (await qenv.design(qenv.a, "Synced", "bright voice"))["voice_id"]
    unsynced = await voices_repo.create(qenv.db, workspace_id=qenv.ws.id, category="workspace", kind="clone",
                                        name="no ref")
    # a clone voice whose reference audio is missing cannot be synced
    assert await error_of(await qenv.client.post(tts_path(unsynced.id), headers=qenv.a.headers(),
                                                 json={"text": "hi"})) == (502, "ADAPTER_SYNC_FAILED")
    adapter.fail_tts = True
    assert await error_of(await qenv.client.post(tts_path(synced), headers=qenv.a.headers(),
                                                 json={"text": "hi"})) == (502, "TTS_FAILED")
    adapter.fail_tts = False
    adapter.key = "rotated"  # relay's key is now wrong
    resp = await qenv.client.post("/v1/app/voices/design", headers=qenv.a.headers(),
                                  json={"name": "x", "design_prompt": "calm"})
    assert await error_of(resp) == (502, "DESIGN_FAILED")
    pcm, rate = speech_pcm(11.0)
    resp = await qenv.client.post("/v1/app/voices/clone", headers=qenv.a.headers(),
                                  data=clone_form(wav_bytes(pcm, rate)))
    assert await error_of(resp) == (502, "ADAPTER_SYNC_FAILED")
    await adapter.stop()  # unreachable
    assert await error_of(await qenv.client.post(tts_path(synced), headers=qenv.a.headers(),
                                                 json={"text": "hi"})) == (502, "TTS_FAILED")


@pytest.mark.parametrize(("status", "text", "expect"), [(200, "hello there my voice", 201), (200, "  ", 422),
                                                        (500, "x", 422)])
async def test_openai_compatible_transcription(sqlite_db, make_app, status: int, text: str,  # noqa: ANN001
                                               expect: int) -> None:
    fake = FakeTranscriber(text=text, status=status)
    url = await fake.start()
    try:
        env = await build_env(sqlite_db, make_app, transcription_url=url, transcription_api_key="tk-123",
                              transcription_model="whisper-large-v3")
        pcm, rate = speech_pcm(12.0)
        resp = await env.client.post("/v1/app/voices/clone", headers=env.a.headers(),
                                     data=clone_form(wav_bytes(pcm, rate)))
        assert fake.calls and fake.calls[0]["model"] == "whisper-large-v3"
        assert fake.calls[0]["auth"] == "Bearer tk-123" and abs(fake.calls[0]["seconds"] - 12.0) < 0.1
        if expect == 201:
            assert resp.status == 201
            row = await voices_repo.get(env.db, (await resp.json())["voice_id"])
            assert row.transcript == text
        else:
            assert await error_of(resp) == (422, "TRANSCRIPTION_FAILED")
    finally:
        await fake.stop()


async def test_story_read_through_the_adapter(qenv: Env, adapter: FakeAdapter) -> None:
    from relay.app_api import admin
    from tests.app_api.helpers import wav_header_fields

    voice = (await qenv.design(qenv.a, "Narrator", "calm"))["voice_id"]
    text = " ".join([TEXT] * 40)  # ~2,200 characters: two adapter calls
    await admin.create_story(qenv.db, qenv.ws.id, {"slug": "night", "name": "Night", "transcript": text})
    resp = await qenv.client.post("/v1/app/stories/night/read", headers=qenv.a.headers(), json={"voice_id": voice})
    assert resp.status == 200 and resp.content_type == "audio/wav"
    data = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(data)
    assert wav_header_fields(data)["rate"] == 24000
    fmt, x, rate = decode(data)
    assert fmt == "wav" and len(x) / rate > 60 and rms_dbfs(x) > -35
    tts_calls = [c for k, c in adapter.calls if k == "tts"]
    assert len(tts_calls) == 2 and all(len(c["text"]) <= 1200 for c in tts_calls)
    assert " ".join(c["text"].strip() for c in tts_calls).split() == text.split()
