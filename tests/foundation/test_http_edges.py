"""Middleware and the sessions endpoint: error shapes, CORS, limits, request ids, persistence, logs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import time
import uuid

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from relay.log import configure_logging
from relay.store import clients
from relay.web.app import create_app
from tests.conftest import base_settings

from .helpers import SESSIONS, assert_error, db_of, device_headers, new_secret, post_session


async def test_unknown_route_and_method_in_error_shape(app_client: TestClient) -> None:
    resp = await app_client.get("/v1/nothing-here")
    assert_error(resp.status, await resp.json(), 404, "not_found")
    resp = await app_client.get(SESSIONS)
    assert_error(resp.status, await resp.json(), 405, "method_not_allowed")
    assert "POST" in resp.headers.get("Allow", "")


async def test_app_api_paths_use_detail_shape(app_client: TestClient) -> None:
    resp = await app_client.get("/v1/app/definitely-not-a-route")
    body = await resp.json()
    assert resp.status == 404 and body == {"detail": {"error": "Not found", "code": "NOT_FOUND"}}


async def test_unexpected_exception_is_json_500(tmp_path) -> None:
    app = create_app(base_settings(tmp_path))

    async def boom(_request: web.Request) -> web.Response:
        raise RuntimeError("kaboom secret-internal-detail")

    app.router.add_get("/v1/boom", boom)
    app.router.add_get("/v1/app/boom", boom)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/v1/boom")
        body = await resp.json()
        assert_error(resp.status, body, 500, "internal_error")
        assert "kaboom" not in body["error"]["message"]
        resp = await client.get("/v1/app/boom")
        assert resp.status == 500 and (await resp.json())["detail"]["code"] == "INTERNAL_ERROR"


async def test_content_type_and_json_validation(app_client: TestClient) -> None:
    headers = device_headers(str(uuid.uuid4()), new_secret())
    resp = await app_client.post(SESSIONS, data="modalities=audio", headers={**headers, "Content-Type": "text/plain"})
    assert_error(resp.status, await resp.json(), 415, "unsupported_media_type")
    cid = (await clients.create(db_of(app_client), "default")).id
    headers = device_headers(cid, new_secret())
    resp = await app_client.post(SESSIONS, data=b"{not json", headers={**headers, "Content-Type": "application/json"})
    assert_error(resp.status, await resp.json(), 400, "invalid_json")
    for bad in ({"modalities": "audio"}, {"modalities": []}, {"modalities": ["video"]}, {"modalities": ["audio", 1]},
                {"modalities": ["audio", "audio"]}, [1, 2]):
        status, body, _ = await post_session(app_client, headers, bad)
        assert_error(status, body, 400, "invalid_modalities" if isinstance(bad, dict) else "invalid_request")
    status, body, _ = await post_session(app_client, headers, {"modalities": ["audio"]})
    assert status == 200
    status, body, _ = await post_session(app_client, headers, {})  # modalities default to text+audio
    assert status == 200


async def test_body_limits(make_app) -> None:
    client = await make_app(max_json_body_bytes=1024, max_sdp_bytes=512)
    headers = device_headers(str(uuid.uuid4()), new_secret())
    big = {"modalities": ["audio"], "pad": "x" * 2000}
    resp = await client.post(SESSIONS, json=big, headers=headers)
    assert_error(resp.status, await resp.json(), 413, "request_too_large")

    async def chunks():  # no Content-Length: the reader enforces the limit
        yield b'{"modalities": ["audio"], "pad": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    cid = (await clients.create(db_of(client), "default")).id
    resp = await client.post(SESSIONS, data=chunks(),
                             headers={**device_headers(cid, new_secret()), "Content-Type": "application/json"})
    assert_error(resp.status, await resp.json(), 413, "request_too_large")
    resp = await client.post("/v1/realtime", data="v=0\r\n" + "a=x\r\n" * 200,
                             headers={**headers, "Content-Type": "application/sdp"})
    assert_error(resp.status, await resp.json(), 413, "request_too_large")


async def test_cors_preflight_any_path(make_app) -> None:
    client = await make_app()
    for path in (SESSIONS, "/v1/realtime", "/v1/app/voices", "/no/such/path"):
        resp = await client.options(path, headers={"Origin": "https://app.example", "Access-Control-Request-Method":
                                                   "POST", "Access-Control-Request-Headers": "x-client-id"})
        assert resp.status == 204, path
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"x-client-id", "x-client-secret", "x-demo-mode", "x-assistant-id", "x-workspace-key",
                "x-app-source", "content-type"} <= allowed
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    # actual cross-origin responses (errors included) carry the CORS headers too
    resp = await client.post(SESSIONS, json={}, headers={"Origin": "https://app.example"})
    assert resp.status == 400
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Request-Id" in resp.headers["Access-Control-Expose-Headers"]


async def test_cors_origin_allowlist(make_app) -> None:
    client = await make_app(cors_origins=["https://good.example"])
    ok = await client.options(SESSIONS, headers={"Origin": "https://good.example",
                                                 "Access-Control-Request-Method": "POST"})
    assert ok.status == 204 and ok.headers["Access-Control-Allow-Origin"] == "https://good.example"
    bad = await client.options(SESSIONS, headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
    assert bad.status == 403 and "Access-Control-Allow-Origin" not in bad.headers
    resp = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_request_id(app_client: TestClient) -> None:
    resp = await app_client.get("/healthz")
    assert len(resp.headers["X-Request-Id"]) == 32
    resp = await app_client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await app_client.get("/healthz", headers={"X-Request-Id": "bad id with spaces\tand tabs"})
    assert resp.headers["X-Request-Id"] != "bad id with spaces\tand tabs"
    resp = await app_client.get("/v1/none")
    assert resp.status == 404 and resp.headers["X-Request-Id"]


async def test_health_endpoints(app_client: TestClient) -> None:
    resp = await app_client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await app_client.get("/readyz")
    assert resp.status == 200 and (await resp.json()) == {"status": "ready", "database": "sqlite"}


async def test_turn_credentials_in_session(make_app) -> None:
    client = await make_app(turn_urls=["turn:127.0.0.1:3478?transport=udp", "turns:turn.example:443"],
                            turn_secret=["first-secret", "second-secret"], turn_ttl_s=600,
                            stun_urls=["stun:127.0.0.1:3478"])
    cid = (await clients.create(db_of(client), "default")).id
    before = int(time.time())
    status, body, _ = await post_session(client, device_headers(cid, new_secret()))
    assert status == 200
    stun, turn = body["iceServers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp", "turns:turn.example:443"]
    expiry, user = turn["username"].split(":", 1)
    assert user == cid and before + 600 <= int(expiry) <= int(time.time()) + 600
    want = base64.b64encode(hmac.new(b"first-secret", turn["username"].encode(), hashlib.sha1).digest()).decode()
    assert turn["credential"] == want


async def test_persistence_across_restart(make_app, tmp_path) -> None:
    data = tmp_path / "persist"
    first = await make_app(data_dir=str(data))
    cid = (await clients.create(db_of(first), "default")).id
    secret = new_secret()
    status, body, _ = await post_session(first, device_headers(cid, secret))
    assert status == 200
    session_id = body["id"]
    await first.close()
    second = await make_app(data_dir=str(data))  # a new app over the same SQLite file
    assert (await post_session(second, device_headers(cid, secret)))[0] == 200
    assert (await post_session(second, device_headers(cid, new_secret())))[0] == 401
    row = await db_of(second).fetchone("SELECT client_id FROM sessions WHERE id = ?", session_id)
    assert row == {"client_id": cid}


async def test_app_over_postgresql(make_app, pg_database_url: str) -> None:
    client = await make_app(database_url=pg_database_url)
    assert db_of(client).dialect == "postgresql"
    cid = (await clients.create(db_of(client), "default")).id
    secret = new_secret()
    assert (await post_session(client, device_headers(cid, secret)))[0] == 200
    assert (await post_session(client, device_headers(cid, new_secret())))[0] == 401
    resp = await client.get("/readyz")
    assert (await resp.json())["database"] == "postgresql"


async def test_no_secret_in_logs(make_app, tmp_path) -> None:
    stream = io.StringIO()
    settings = base_settings(tmp_path, log_format="json", log_level="debug", admin_token="admin-token-abcdef",
                             turn_secret=["turn-secret-xyz123"], turn_urls=["turn:127.0.0.1:3478"])
    root = logging.getLogger("relay")
    saved = (root.propagate, root.level)
    handler = configure_logging(settings, stream)
    try:
        client = await make_app(log_format="json", turn_secret=["turn-secret-xyz123"],
                                turn_urls=["turn:127.0.0.1:3478"])
        cid = (await clients.create(db_of(client), "default")).id
        secret = new_secret()
        await post_session(client, device_headers(cid, secret))
        wrong = new_secret()
        await post_session(client, device_headers(cid, wrong))
        logging.getLogger("relay.session").info("headers seen: X-Client-Secret: %s Authorization: Bearer %s",
                                                 secret, "admin-token-abcdef")
        logging.getLogger("relay.session").info("turn static-auth-secret=turn-secret-xyz123")
    finally:  # leave logging as pytest had it (caplog relies on propagation)
        root.removeHandler(handler)
        for name in ("aiohttp.server", "aiohttp.web"):
            logging.getLogger(name).removeHandler(handler)
        root.propagate, root.level = saved
    out = stream.getvalue()
    assert '"logger":"relay.access"' in out and "invalid client secret" in out and cid in out
    for leaked in (secret, wrong, "admin-token-abcdef", "turn-secret-xyz123"):
        assert leaked not in out
