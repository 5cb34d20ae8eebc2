"""Bad input never crashes the app API: malformed bodies get a clear 4xx in the detail shape."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.app_api.conftest import Env, error_of
from tests.app_api.test_tts import tts_path

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=8)
bodies = st.dictionaries(st.sampled_from(["text", "output_format", "speed", "stability", "voice_id", "name",
                                          "design_prompt", "language", "description"]), json_values, max_size=5)


async def test_malformed_multipart_bodies(env_sqlite: Env) -> None:
    env = env_sqlite
    h = env.a.headers()
    cases = [
        ("multipart/form-data; boundary=XYZ", b"--XYZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx"),
        ("multipart/form-data; boundary=XYZ", b"garbage without boundaries"),
        ("multipart/form-data", b"--XYZ\r\n\r\n--XYZ--"),
        ("multipart/form-data; boundary=XYZ", b"--XYZ\r\nContent-Disposition: form-data; name=\"audio_file\"; "
                                              b"filename=\"a.wav\"\r\n\r\nRIFF\r\n--XYZ--\r\n"),
    ]
    for ctype, body in cases:
        resp = await env.client.post("/v1/app/voices/clone", headers={**h, "Content-Type": ctype}, data=body)
        status, code = await error_of(resp)
        assert 400 <= status < 500, (ctype, body, status, code)


async def test_random_json_bodies_get_4xx_or_200(env_sqlite: Env) -> None:
    env = env_sqlite
    voice = await env.workspace_voice()
    await env.client.get("/v1/app/voices", headers=env.a.headers())
    seen: list[tuple[str, int]] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies | json_values, path=st.sampled_from(["tts", "design", "read"]))
    def check(body: object, path: str) -> None:
        seen.append((path, body))  # type: ignore[arg-type]

    check()
    from relay.app_api import admin

    await admin.create_story(env.db, env.ws.id, {"slug": "s", "name": "S", "transcript": "Hi."})
    urls = {"tts": tts_path(voice.id), "design": "/v1/app/voices/design", "read": "/v1/app/stories/s/read"}
    statuses: list[int] = []
    for path, body in seen:
        if path != "read" and isinstance(body, dict) and "text" in body and isinstance(body["text"], str):
            body = {**body, "text": body["text"][:20]}
        resp = await env.client.post(urls[path], headers=env.a.headers(), json=body)
        statuses.append(resp.status)
        if resp.status in (200, 201):
            continue
        status, code = await error_of(resp)
        assert 400 <= status < 500, (path, body, status, code)
    assert len(statuses) == 60 and any(s < 300 for s in statuses) and any(s >= 400 for s in statuses)
