"""The built-in default assistant honours ``upstream_model`` only for local ``relay-*`` modes."""

from __future__ import annotations

import pytest

from relay.default_assistant import LOCAL_MODEL, resolve_default_assistant
from relay.settings import load_settings


@pytest.mark.parametrize("model", ["relay-loopback", "relay-talk", "relay-echo", "relay-fail"])
def test_local_provider_takes_a_relay_model_from_settings(model: str) -> None:
    a = resolve_default_assistant(load_settings(environ={"RELAY_UPSTREAM_MODEL": model}))
    assert a.provider == "local" and a.model == model


@pytest.mark.parametrize("model", ["gpt-4o-mini-realtime-preview", "gpt-realtime", "echo", "Relay-loopback", ""])
def test_local_provider_ignores_non_local_models(model: str) -> None:
    a = resolve_default_assistant(load_settings(environ={"RELAY_UPSTREAM_MODEL": model}))
    assert a.provider == "local" and a.model == LOCAL_MODEL == "relay-echo"


def test_local_default_is_relay_echo() -> None:
    assert resolve_default_assistant(load_settings(environ={})).model == "relay-echo"


def test_remote_upstream_keeps_any_model() -> None:
    s = load_settings(environ={"RELAY_UPSTREAM_URL": "wss://example.invalid/v1/realtime",
                               "RELAY_UPSTREAM_MODEL": "gpt-realtime"})
    a = resolve_default_assistant(s)
    assert a.provider == "openai" and a.model == "gpt-realtime"


async def test_demo_device_gets_the_configured_local_model(make_app) -> None:
    from aiohttp.test_utils import make_mocked_request

    from relay.web.authn import authenticate

    app = await make_app(demo_mode=True, upstream_model="relay-loopback")
    req = make_mocked_request("POST", "/v1/realtime/sessions", headers={"X-Demo-Mode": "true", "X-Client-Id": "demo-device"},
                              app=app.server.app)
    device = await authenticate(req)
    assert device.assistant.provider == "local" and device.assistant.model == "relay-loopback"
