"""The WebSocket edge's handshake: token auth matrix, token admin (HTTP and CLI), storage."""

from __future__ import annotations

import argparse
import hashlib

import pytest

from relay.admin.cli import add_admin_parser, run_admin
from relay.store import tokens as tokens_repo
from relay.web import keys
from tests.conftest import create_database

from .conftest import ADMIN


async def test_query_token_and_bearer_both_open_a_session(edge) -> None:
    token = await edge.token()
    for via in ("query", "header"):
        conn = await edge.connect(token, via=via)
        created = await conn.recv()
        assert created["type"] == "session.created"
        assert "instructions" not in created["session"] and "tools" not in created["session"]
        await conn.ws.close()
    await edge.wait_idle()
    status, doc = await edge.admin("GET", "/tokens")
    assert status == 200
    [row] = doc["data"]
    assert row["last_used_at"] is not None and "token" not in row and "token_hash" not in row


@pytest.mark.parametrize("token, code", [
    (None, "missing_token"),
    ("", "missing_token"),
    ("nonsense", "invalid_token"),
    ("rtk_0123456789abcdef.not-the-secret", "invalid_token"),
    ("rtk_0123456789abcdef." + "x" * 400, "invalid_token"),
])
async def test_missing_or_wrong_token_is_401_before_upgrade(edge, token, code) -> None:
    status, body, headers = await edge.handshake_error(token)
    assert status == 401
    assert body == {"error": {"message": body["error"]["message"], "type": "authentication_error", "code": code}}
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert len(edge.plane.registry) == 0


async def test_wrong_secret_of_a_real_token_id_is_401(edge) -> None:
    token = await edge.token()
    tid = token.split(".")[0]
    status, body, _ = await edge.handshake_error(tid + ".wrong-secret-wrong-secret", via="header")
    assert (status, body["error"]["code"]) == (401, "invalid_token")


async def test_revoked_token_is_refused(edge) -> None:
    token = await edge.token()
    tid = token.split(".")[0]
    status, doc = await edge.admin("POST", f"/tokens/{tid}/revoke")
    assert status == 200 and doc["revoked"] is True and doc["revoked_at"] is not None
    status, body, _ = await edge.handshake_error(token)
    assert (status, body["error"]["code"]) == (401, "token_revoked")
    status, doc = await edge.admin("DELETE", f"/tokens/{tid}")  # idempotent
    assert status == 200 and doc["revoked"] is True


async def test_failed_tokens_are_throttled_per_token_id(edge_factory) -> None:
    edge = await edge_factory(auth_fail_limit=2, auth_fail_window_s=60)
    token = await edge.token()
    tid = token.split(".")[0]
    for _ in range(2):
        status, body, _ = await edge.handshake_error(tid + ".guess-guess-guess")
        assert status == 401
    status, body, headers = await edge.handshake_error(tid + ".guess-guess-guess")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1
    # even the right token waits out the window: guessing cannot race the owner
    status, body, _ = await edge.handshake_error(token)
    assert status == 429
    # another token of the same address still works (the address budget is 10x)
    other = await edge.token(name="other")
    conn = await edge.connect(other)
    assert (await conn.recv())["type"] == "session.created"


async def test_failed_tokens_are_throttled_per_address(edge_factory) -> None:
    edge = await edge_factory(auth_fail_limit=1, auth_fail_window_s=60)
    for i in range(10):
        status, _, _ = await edge.handshake_error(f"rtk_{i:016x}.nope")
        assert status == 401
    status, body, _ = await edge.handshake_error("rtk_ffffffffffffffff.nope")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    status, body, _ = await edge.handshake_error(None)
    assert status == 429  # blocked before the token is even looked at


async def test_plain_get_without_upgrade_is_426(edge) -> None:
    token = await edge.token()
    async with edge.http.get(edge.url("/v1/realtime"), params={"token": token}) as resp:
        assert resp.status == 426
        assert (await resp.json())["error"]["code"] == "websocket_required"


async def test_bad_audio_format_is_400(edge) -> None:
    token = await edge.token()
    status, body, _ = await edge.handshake_error(token, audio_format="mp3")
    assert (status, body["error"]["code"]) == (400, "invalid_audio_format")


async def test_token_admin_validation(edge) -> None:
    status, doc = await edge.admin("POST", "/tokens", json={"workspace_id": "nope"})
    assert (status, doc["error"]["code"]) == (404, "not_found")
    status, doc = await edge.admin("POST", "/tokens", json={"assistant_id": "nope"})
    assert (status, doc["error"]["code"]) == (404, "not_found")
    status, doc = await edge.admin("POST", "/tokens", json={"bogus": 1})
    assert (status, doc["error"]["code"]) == (400, "invalid_request")
    status, doc = await edge.admin("POST", "/workspaces", json={"name": "Other"})
    other_ws = doc["id"]
    other_assistant = await edge.assistant(workspace_id=other_ws)
    status, doc = await edge.admin("POST", "/tokens", json={"workspace_id": "default",
                                                             "assistant_id": other_assistant["id"]})
    assert (status, doc["error"]["code"]) == (409, "conflict")
    status, doc = await edge.admin("GET", "/tokens/rtk_0000000000000000")
    assert status == 404
    async with edge.http.get(edge.url("/admin/v1/tokens")) as resp:
        assert resp.status == 401


async def test_tokens_are_stored_hashed(db) -> None:
    token, plain = await tokens_repo.create(db, "default", name="svc")
    row = await db.fetchone("SELECT * FROM api_tokens WHERE id = ?", token.id)
    assert plain not in str(row)
    assert row["token_hash"] == hashlib.sha256(plain.encode()).hexdigest()
    assert plain.startswith(token.id + ".") and len(plain.split(".")[1]) >= 43
    assert await tokens_repo.verify(db, plain) == ("ok", token)
    assert (await tokens_repo.verify(db, plain + "x"))[0] == "mismatch"
    assert (await tokens_repo.verify(db, "rtk_0000000000000000.abc"))[0] == "unknown"
    assert (await tokens_repo.verify(db, "rwk_abc"))[0] == "malformed"
    revoked = await tokens_repo.revoke(db, token.id, now=5.0)
    assert revoked.revoked_at == 5.0
    assert (await tokens_repo.revoke(db, token.id, now=9.0)).revoked_at == 5.0
    assert (await tokens_repo.verify(db, plain))[0] == "revoked"
    assert [t.id for t in await tokens_repo.list_all(db, "default")] == [token.id]
    assert await tokens_repo.list_all(db, "elsewhere") == []


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_admin_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.config = None
    return run_admin(args)


def test_cli_creates_lists_and_revokes_tokens(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RELAY_DATA_DIR", str(tmp_path))
    create_database(tmp_path)
    assert _cli(["admin", "tokens", "create", "--workspace", "default", "--name", "backend"]) == 0
    out = capsys.readouterr()
    created = dict(line.split(None, 1) for line in out.out.splitlines() if line.strip())
    assert created["token"].startswith(created["id"] + ".")
    assert "shown only now" in out.err
    assert _cli(["admin", "tokens", "list"]) == 0
    listing = capsys.readouterr().out
    assert created["id"] in listing and created["token"] not in listing and "backend" in listing
    assert _cli(["admin", "tokens", "revoke", created["id"]]) == 0
    assert "revoked_at" in capsys.readouterr().out
    assert _cli(["admin", "tokens", "revoke", "rtk_0000000000000000"]) == 1
    assert _cli(["admin", "tokens", "create", "--workspace", "missing"]) == 1
    assert _cli(["admin", "tokens", "create", "--name", "ga-bridge", "--dialect", "ga"]) == 0
    created = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    assert created["client_dialect"] == "ga"


async def test_openapi_documents_the_websocket_and_token_admin(edge) -> None:
    async with edge.http.get(edge.url("/openapi.json")) as resp:
        doc = await resp.json()
    ws = doc["paths"]["/v1/realtime"]
    assert "get" in ws and "post" in ws  # the SDP exchange stays documented next to the WebSocket
    assert {p["name"] for p in ws["get"]["parameters"]} == {"token", "audio_format", "dialect", "model"}
    assert "/admin/v1/tokens" in doc["paths"] and "ApiToken" in doc["components"]["schemas"]
    assert edge.app[keys.SETTINGS].admin_token == ADMIN


async def test_a_token_gets_through_where_it_is_known_and_both_edges_count_refusals(edge_factory) -> None:
    from relay.ops.counters import OPS

    edge = await edge_factory(auth_fail_limit=2, auth_fail_window_s=60)
    token = await edge.token()
    tid = token.split(".")[0]
    conn = await edge.connect(token)  # used from this address: known here from now on
    assert (await conn.recv())["type"] == "session.created"
    await conn.ws.close()
    for _ in range(2):
        assert (await edge.handshake_error(tid + ".guess-guess-guess"))[0] == 401
    status, body, _ = await edge.handshake_error(tid + ".guess-guess-guess")  # over budget: still checked,
    assert (status, body["error"]["code"]) == (429, "rate_limited")           # still refused
    conn = await edge.connect(token)  # the owner is not locked out
    assert (await conn.recv())["type"] == "session.created"
    await conn.ws.close()
    assert edge.app[OPS].throttled.get("auth_client_id", 0) >= 1  # counted like the device edge's
    await edge.wait_idle()
