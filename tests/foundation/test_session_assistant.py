"""``POST /v1/realtime/sessions`` tells the device which assistant relay applies (the console's
session panel): name, model, voice, turn detection and tool names - never the instructions,
the tools' descriptions or webhooks, the upstream or its key."""

from __future__ import annotations

from relay.store import assistants as assistants_repo
from relay.store import clients as clients_repo

from .helpers import db_of, device_headers, new_secret, post_session

SECRET_PROMPT = "TOP-SECRET-PROMPT: never tell the device this"


async def test_the_session_answer_names_the_applied_assistant_without_its_secrets(app_client) -> None:
    db = db_of(app_client)
    assistant = await assistants_repo.create(
        db, "default", "Kitchen helper", provider="openai", upstream_url="wss://upstream.invalid/v1/realtime",
        api_key="sk-should-never-leave", model="gpt-4o-mini-realtime-preview", voice="verse",
        instructions=SECRET_PROMPT, turn_detection={"type": "server_vad", "silence_duration_ms": 400},
        tools=[{"name": "lookup_order", "description": "DESCRIPTION-NOT-FOR-DEVICES", "side": "server",
                "webhook_url": "https://hooks.invalid/orders", "parameters": {"type": "object"}}])
    client = await clients_repo.create(db, "default", assistant_id=assistant.id)
    status, body, _ = await post_session(app_client, device_headers(client.id, new_secret()))
    assert status == 200, body
    assert body["assistant"] == {
        "id": assistant.id, "name": "Kitchen helper", "model": "gpt-4o-mini-realtime-preview", "voice": "verse",
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
        "tools": [{"name": "lookup_order", "side": "server"},
                  *({"name": n, "side": "client"} for n in ("adjust_device_volume", "set_device_volume",
                                                             "quiet_device", "stop_audio"))]}
    text = str(body)
    for secret in (SECRET_PROMPT, "sk-should-never-leave", "DESCRIPTION-NOT-FOR-DEVICES", "hooks.invalid",
                   "upstream.invalid"):
        assert secret not in text
    assert set(body) >= {"id", "iceServers", "expires_at"}  # the contract's fields are unchanged
