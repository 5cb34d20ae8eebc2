"""The device authentication matrix (seeds 000/001/002), over real HTTP and a real store."""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestClient

from relay.store import assistants, clients, workspaces

from .helpers import assert_error, db_of, device_headers, new_secret, post_session


@pytest.fixture
async def app(make_app) -> TestClient:
    return await make_app(auth_fail_limit=3, auth_fail_window_s=60)


async def new_client(app: TestClient, workspace_id: str = "default", **kw) -> str:
    return (await clients.create(db_of(app), workspace_id, **kw)).id


async def test_missing_client_id(app: TestClient) -> None:
    status, body, _ = await post_session(app, device_headers(secret=new_secret()))
    assert_error(status, body, 400, "missing_header")
    assert body["error"]["message"] == "Missing X-Client-Id header"
    assert body["error"]["type"] == "invalid_request_error"


async def test_unknown_client_is_404(app: TestClient) -> None:
    status, body, _ = await post_session(app, device_headers(str(uuid.uuid4()), new_secret()))
    assert_error(status, body, 404, "client_not_found")
    assert body["error"]["message"] == "Client ID not found or not activated"


async def test_tofu_enrol_then_verify(app: TestClient) -> None:
    cid = await new_client(app)
    secret = new_secret()
    status, body, _ = await post_session(app, device_headers(cid, secret))
    assert status == 200 and body["id"].startswith("session_") and body["iceServers"] == []
    c = await clients.get(db_of(app), cid)
    assert c.enrolled and c.enrolled_at is not None
    status, body, _ = await post_session(app, device_headers(cid, secret))
    assert status == 200
    status, body, _ = await post_session(app, device_headers(cid, new_secret()))
    assert_error(status, body, 401, "invalid_secret")
    assert body["error"]["type"] == "authentication_error"


async def test_client_id_is_case_insensitive(app: TestClient) -> None:
    cid = await new_client(app)
    secret = new_secret()
    assert (await post_session(app, device_headers(cid, secret)))[0] == 200
    assert (await post_session(app, device_headers(cid.upper(), secret)))[0] == 200


async def test_missing_secret_is_401(app: TestClient) -> None:
    cid = await new_client(app)
    status, body, _ = await post_session(app, device_headers(cid))
    assert_error(status, body, 401, "missing_secret")


@pytest.mark.parametrize("secret", ["short", "x" * 31, "y" * 513])
async def test_bad_secret_length_is_400(app: TestClient, secret: str) -> None:
    cid = await new_client(app)
    status, body, _ = await post_session(app, device_headers(cid, secret))
    assert_error(status, body, 400, "invalid_secret")
    assert not (await clients.get(db_of(app), cid)).enrolled


async def test_secretless_workspace(app: TestClient) -> None:
    ws, _ = await workspaces.create(db_of(app), "kiosks", allow_secretless=True)
    cid = await new_client(app, ws.id)
    assert (await post_session(app, device_headers(cid)))[0] == 200
    # once a secret is enrolled, it is required again
    secret = new_secret()
    assert (await post_session(app, device_headers(cid, secret)))[0] == 200
    status, body, _ = await post_session(app, device_headers(cid))
    assert_error(status, body, 401, "missing_secret")


async def test_disabled_client_is_404_and_reenabled_works(app: TestClient) -> None:
    cid = await new_client(app)
    secret = new_secret()
    assert (await post_session(app, device_headers(cid, secret)))[0] == 200
    await clients.set_status(db_of(app), cid, "disabled")
    status, body, _ = await post_session(app, device_headers(cid, secret))
    assert_error(status, body, 404, "client_not_found")
    await clients.set_status(db_of(app), cid, "active")
    assert (await post_session(app, device_headers(cid, secret)))[0] == 200


async def test_admin_reset_allows_new_secret(app: TestClient) -> None:
    cid = await new_client(app)
    old, new = new_secret(), new_secret()
    assert (await post_session(app, device_headers(cid, old)))[0] == 200
    assert (await post_session(app, device_headers(cid, new)))[0] == 401
    await clients.reset_secret(db_of(app), cid)
    assert (await post_session(app, device_headers(cid, new)))[0] == 200
    assert (await post_session(app, device_headers(cid, old)))[0] == 401


async def test_workspace_self_enrolment(app: TestClient) -> None:
    ws, key = await workspaces.create(db_of(app), "fleet", allow_self_enrol=True, with_key=True)
    cid = str(uuid.uuid4())
    secret = new_secret()
    status, body, _ = await post_session(app, device_headers(cid, secret, X_Workspace_Key=key))
    assert status == 200, body
    c = await clients.get(db_of(app), cid)
    assert c.workspace_id == ws.id and c.enrolled
    # later without the key, same secret: fine (the client exists now)
    assert (await post_session(app, device_headers(cid, secret)))[0] == 200


async def test_self_enrolment_needs_uuid(app: TestClient) -> None:
    _, key = await workspaces.create(db_of(app), "fleet", allow_self_enrol=True, with_key=True)
    status, body, _ = await post_session(app, device_headers("kitchen-speaker", new_secret(), X_Workspace_Key=key))
    assert_error(status, body, 400, "invalid_client_id")


async def test_self_enrolment_needs_flag_and_valid_key(app: TestClient) -> None:
    _, key = await workspaces.create(db_of(app), "closed", allow_self_enrol=False, with_key=True)
    status, body, _ = await post_session(app, device_headers(str(uuid.uuid4()), new_secret(), X_Workspace_Key=key))
    assert_error(status, body, 404, "client_not_found")
    status, body, _ = await post_session(app, device_headers(str(uuid.uuid4()), new_secret(),
                                                             X_Workspace_Key="rwk_wrong-key-123456"))
    assert_error(status, body, 401, "invalid_workspace_key")


async def test_self_enrolment_does_not_revive_disabled(app: TestClient) -> None:
    ws, key = await workspaces.create(db_of(app), "fleet", allow_self_enrol=True, with_key=True)
    cid = await new_client(app, ws.id)
    await clients.set_status(db_of(app), cid, "disabled")
    status, body, _ = await post_session(app, device_headers(cid, new_secret(), X_Workspace_Key=key))
    assert_error(status, body, 404, "client_not_found")


async def test_workspace_key_of_other_workspace_refused(app: TestClient) -> None:
    _, key = await workspaces.create(db_of(app), "other", allow_self_enrol=True, with_key=True)
    cid = await new_client(app)  # in "default"
    status, body, _ = await post_session(app, device_headers(cid, new_secret(), X_Workspace_Key=key))
    assert_error(status, body, 401, "invalid_workspace_key")


async def test_demo_mode_off_refuses(app: TestClient) -> None:
    status, body, _ = await post_session(app, device_headers(str(uuid.uuid4()), X_Demo_Mode="true"))
    assert_error(status, body, 403, "demo_mode_disabled")


async def test_demo_mode_on_bypasses_validation(make_app) -> None:
    app = await make_app(demo_mode=True, demo_max_call_s=120)
    status, body, _ = await post_session(app, device_headers("anything", X_Demo_Mode="True"))
    assert status == 200 and body["id"].startswith("session_")
    # X-Client-Id is required of every request, demo calls included (the Realtime device API), and bounded
    status, body, _ = await post_session(app, device_headers(X_Demo_Mode="true"))
    assert_error(status, body, 400, "missing_header")
    status, body, _ = await post_session(app, device_headers("x" * 129, X_Demo_Mode="true"))
    assert_error(status, body, 400, "invalid_client_id")
    # X-Demo-Mode: false is not a demo call: normal validation applies
    status, body, _ = await post_session(app, device_headers(str(uuid.uuid4()), new_secret(), X_Demo_Mode="false"))
    assert_error(status, body, 404, "client_not_found")


async def test_demo_device_fields(make_app) -> None:
    from aiohttp.test_utils import make_mocked_request

    from relay.web import keys
    from relay.web.authn import authenticate

    app = await make_app(demo_mode=True, demo_max_call_s=120)
    req = make_mocked_request("POST", "/v1/realtime/sessions", headers={"X-Demo-Mode": "true", "X-Client-Id": "demo-device"},
                              app=app.server.app)
    device = await authenticate(req)
    assert device.demo and device.max_call_s == 120 and device.workspace_id is None
    assert device.assistant.provider == "local" and device.assistant.model == "relay-echo"
    assert {t.name for t in device.assistant.all_tools} == {"adjust_device_volume", "set_device_volume",
                                                           "quiet_device", "stop_audio"}
    assert app.server.app[keys.SETTINGS].demo_mode


async def _device(app: TestClient, headers: dict[str, str]):
    from aiohttp.test_utils import make_mocked_request

    from relay.web.authn import authenticate

    req = make_mocked_request("POST", "/v1/realtime/sessions", headers=headers, app=app.server.app)
    return await authenticate(req)


async def test_assistant_resolution_and_override(app: TestClient) -> None:
    db = db_of(app)
    mine = await assistants.create(db, "default", "Mine", voice="verse")
    other = await assistants.create(db, "default", "Other", voice="sage")
    ws2, _ = await workspaces.create(db, "foreign")
    foreign = await assistants.create(db, ws2.id, "Foreign")
    cid = await new_client(app, assistant_id=mine.id)
    secret = new_secret()
    device = await _device(app, device_headers(cid, secret))
    assert device.assistant.id == mine.id and device.client_id == cid and device.workspace_id == "default"
    assert not device.demo and device.enrolled_now
    device = await _device(app, device_headers(cid, secret, X_Assistant_Id=other.id))
    assert device.assistant.id == other.id and not device.enrolled_now
    status, body, _ = await post_session(app, device_headers(cid, secret, X_Assistant_Id=foreign.id))
    assert_error(status, body, 404, "assistant_not_found")
    status, body, _ = await post_session(app, device_headers(cid, secret, X_Assistant_Id="nope"))
    assert_error(status, body, 404, "assistant_not_found")
    # no assistant of its own: the workspace default, else the operator's default
    plain = await new_client(app)
    assert (await _device(app, device_headers(plain, secret))).assistant.id == "default"
    await workspaces.update(db, "default", default_assistant_id=other.id)
    assert (await _device(app, device_headers(plain, secret))).assistant.id == other.id


def _from(address: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-Forwarded-For": address}


async def test_failed_secrets_throttled_per_client(make_app) -> None:
    app = await make_app(auth_fail_limit=3, auth_fail_window_s=60, trust_forwarded_for=True)
    device, attacker = "192.0.2.10", "198.51.100.7"
    cid = await new_client(app)
    secret = new_secret()
    assert (await post_session(app, _from(device, device_headers(cid, secret))))[0] == 200
    for _ in range(3):
        assert (await post_session(app, _from(attacker, device_headers(cid, new_secret()))))[0] == 401
    # over budget: refused before the secret is checked (guessing is capped) ...
    status, body, headers = await post_session(app, _from(attacker, device_headers(cid, secret)))
    assert_error(status, body, 429, "rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 60
    # ... except from where the device authenticated: its right secret passes, a wrong one is a 429
    assert (await post_session(app, _from(device, device_headers(cid, secret))))[0] == 200
    status, body, _ = await post_session(app, _from(device, device_headers(cid, new_secret())))
    assert_error(status, body, 429, "rate_limited")
    assert (await post_session(app, _from(device, device_headers(cid, secret))))[0] == 200
    # other clients are unaffected
    other = await new_client(app)
    assert (await post_session(app, device_headers(other, new_secret())))[0] == 200


async def test_throttle_window_expires(make_app) -> None:
    from relay.web.authn import THROTTLE

    app = await make_app(auth_fail_limit=3, auth_fail_window_s=60, trust_forwarded_for=True)
    cid = await new_client(app)
    secret = new_secret()
    assert (await post_session(app, _from("192.0.2.10", device_headers(cid, secret))))[0] == 200
    for _ in range(3):
        assert (await post_session(app, _from("198.51.100.7", device_headers(cid, new_secret()))))[0] == 401
    assert (await post_session(app, _from("203.0.113.5", device_headers(cid, secret))))[0] == 429
    # age the recorded failures past the window: they live in the store (shared by every worker and node)
    assert app.server.app[THROTTLE].shared(db_of(app)) is not None
    assert await db_of(app).execute("UPDATE auth_failures SET at = at - 61") == 6  # 3 x (client id, address)
    assert (await post_session(app, _from("203.0.113.5", device_headers(cid, secret))))[0] == 200


async def test_failed_secrets_throttled_per_address(make_app) -> None:
    app = await make_app(auth_fail_limit=1, auth_fail_window_s=60)  # per address: 10
    ids = [await new_client(app) for _ in range(11)]
    for cid in ids:
        assert (await post_session(app, device_headers(cid, new_secret())))[0] == 200  # enrol
    for cid in ids[:10]:
        assert (await post_session(app, device_headers(cid, new_secret())))[0] == 401
    status, body, headers = await post_session(app, device_headers(ids[10], new_secret()))
    assert_error(status, body, 429, "rate_limited")
    assert "Retry-After" in headers


async def test_overlong_client_id(app: TestClient) -> None:
    status, body, _ = await post_session(app, device_headers("x" * 200, new_secret()))
    assert_error(status, body, 400, "invalid_client_id")


async def test_authenticate_app_maps_to_detail_shape(app: TestClient) -> None:
    from aiohttp.test_utils import make_mocked_request

    from relay.web.authn import authenticate_app
    from relay.web.errors import AppApiError

    cid = await new_client(app)
    req = make_mocked_request("GET", "/v1/app/voices", headers=device_headers(cid, new_secret()), app=app.server.app)
    with pytest.raises(AppApiError) as info:
        await authenticate_app(req)
    assert info.value.status == 400 and info.value.code == "MISSING_HEADER"
    assert "X-Workspace-Key" in info.value.error


async def test_forwarded_for_only_when_trusted(make_app) -> None:
    """Behind a proxy every device shares its address: with trust_forwarded_for the throttle keys on
    the last X-Forwarded-For hop instead, so one abusive device does not block the others."""
    for trusted in (True, False):
        app = await make_app(auth_fail_limit=1, trust_forwarded_for=trusted)  # 10 per address
        ids = [await new_client(app) for _ in range(11)]
        for cid in ids:
            assert (await post_session(app, device_headers(cid, new_secret())))[0] == 200
        for cid in ids[:10]:
            headers = device_headers(cid, new_secret(), X_Forwarded_For="198.51.100.7, 203.0.113.9")
            assert (await post_session(app, headers))[0] == 401
        other = device_headers(ids[10], new_secret(), X_Forwarded_For="203.0.113.50")
        status = (await post_session(app, other))[0]
        assert status == (401 if trusted else 429)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_concurrent_first_secrets_enrol_exactly_one(make_app, backend: str, postgres_url: str) -> None:
    """TOFU under a race: many first requests with different secrets -> exactly one is enrolled."""
    import asyncio

    from tests.conftest import create_pg_database

    overrides = {"database_url": await create_pg_database(postgres_url)} if backend == "postgresql" else {}
    app = await make_app(auth_fail_limit=100, **overrides)
    cid = await new_client(app)
    candidates = [new_secret() for _ in range(8)]
    results = await asyncio.gather(*(post_session(app, device_headers(cid, s)) for s in candidates))
    statuses = [r[0] for r in results]
    assert statuses.count(200) == 1 and statuses.count(401) == 7, statuses
    winner = candidates[statuses.index(200)]
    assert (await post_session(app, device_headers(cid, winner)))[0] == 200
