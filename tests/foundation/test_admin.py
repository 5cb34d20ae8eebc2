"""Admin HTTP API (/admin/v1/) and the ``relay admin`` CLI, over the same store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import create_database

from .helpers import assert_error, device_headers, new_secret, post_session

TOKEN = "admin-" + "t" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def admin(make_app) -> TestClient:
    return await make_app(admin_token=TOKEN)


async def test_disabled_without_token(app_client: TestClient) -> None:
    for path in ("/admin/v1/clients", "/admin/v1/anything"):
        resp = await app_client.get(path, headers=AUTH)
        assert_error(resp.status, await resp.json(), 404, "not_found")


async def test_token_required(admin: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
        resp = await admin.get("/admin/v1/clients", headers=headers)
        assert_error(resp.status, await resp.json(), 401, "invalid_admin_token")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_token_failures_throttled(make_app) -> None:
    client = await make_app(admin_token=TOKEN, auth_fail_limit=1)  # 10 per address
    for _ in range(10):
        assert (await client.get("/admin/v1/clients", headers={"Authorization": "Bearer nope"})).status == 401
    resp = await client.get("/admin/v1/clients", headers=AUTH)
    assert_error(resp.status, await resp.json(), 429, "rate_limited")


async def test_full_lifecycle(admin: TestClient) -> None:
    resp = await admin.post("/admin/v1/workspaces", json={"name": "Fleet", "allow_self_enrol": True,
                                                          "with_key": True}, headers=AUTH)
    assert resp.status == 201
    ws = await resp.json()
    assert ws["key"].startswith("rwk_") and ws["allow_self_enrol"] is True
    resp = await admin.get(f"/admin/v1/workspaces/{ws['id']}", headers=AUTH)
    assert "key" not in await resp.json()

    resp = await admin.post("/admin/v1/assistants", headers=AUTH, json={
        "workspace_id": ws["id"], "name": "Helper", "voice": "verse", "api_key": "sk-secret-value",
        "upstream_url": "wss://upstream.invalid/v1/realtime", "provider": "openai",
        "tools": [{"name": "lookup", "side": "server", "webhook_url": "https://hooks.invalid/x"}]})
    assert resp.status == 201, await resp.text()
    asst = await resp.json()
    assert asst["has_api_key"] is True and "sk-secret-value" not in json.dumps(asst)
    resp = await admin.patch(f"/admin/v1/assistants/{asst['id']}", json={"instructions": "Short answers."},
                             headers=AUTH)
    assert (await resp.json())["instructions"] == "Short answers."

    resp = await admin.post("/admin/v1/clients", json={"workspace_id": ws["id"], "assistant_id": asst["id"],
                                                       "name": "kitchen"}, headers=AUTH)
    assert resp.status == 201
    cl = await resp.json()
    assert cl["enrolled"] is False and cl["status"] == "active"
    resp = await admin.get("/admin/v1/clients", params={"workspace_id": ws["id"]}, headers=AUTH)
    assert [c["id"] for c in (await resp.json())["data"]] == [cl["id"]]

    secret = new_secret()
    assert (await post_session(admin, device_headers(cl["id"], secret)))[0] == 200
    assert (await (await admin.get(f"/admin/v1/clients/{cl['id']}", headers=AUTH)).json())["enrolled"] is True

    resp = await admin.post(f"/admin/v1/clients/{cl['id']}/disable", headers=AUTH)
    assert (await resp.json())["status"] == "disabled"
    assert (await post_session(admin, device_headers(cl["id"], secret)))[0] == 404
    await admin.post(f"/admin/v1/clients/{cl['id']}/enable", headers=AUTH)
    assert (await post_session(admin, device_headers(cl["id"], secret)))[0] == 200

    resp = await admin.post(f"/admin/v1/clients/{cl['id']}/reset-secret", headers=AUTH)
    assert (await resp.json())["enrolled"] is False
    other = new_secret()
    assert (await post_session(admin, device_headers(cl["id"], other)))[0] == 200
    assert (await post_session(admin, device_headers(cl["id"], secret)))[0] == 401

    resp = await admin.get(f"/admin/v1/clients/{cl['id']}/usage", headers=AUTH)
    assert (await resp.json())["totals"]["calls"] == 0


async def test_admin_errors(admin: TestClient) -> None:
    resp = await admin.get(f"/admin/v1/clients/{uuid.uuid4()}", headers=AUTH)
    assert_error(resp.status, await resp.json(), 404, "not_found")
    resp = await admin.post("/admin/v1/clients", json={"id": "not-a-uuid"}, headers=AUTH)
    assert_error(resp.status, await resp.json(), 400, "invalid_request")
    cid = str(uuid.uuid4())
    assert (await admin.post("/admin/v1/clients", json={"id": cid}, headers=AUTH)).status == 201
    resp = await admin.post("/admin/v1/clients", json={"id": cid}, headers=AUTH)
    assert_error(resp.status, await resp.json(), 409, "conflict")
    resp = await admin.post("/admin/v1/assistants", json={"name": "x", "provider": "nope"}, headers=AUTH)
    assert_error(resp.status, await resp.json(), 400, "invalid_request")
    resp = await admin.post("/admin/v1/workspaces", data="x", headers={**AUTH, "Content-Type": "text/plain"})
    assert_error(resp.status, await resp.json(), 415, "unsupported_media_type")
    resp = await admin.post("/admin/v1/workspaces", json={"name": "x", "bogus": 1}, headers=AUTH)
    assert_error(resp.status, await resp.json(), 400, "invalid_request")
    resp = await admin.get("/admin/v1/clients", params={"limit": "abc"}, headers=AUTH)
    assert_error(resp.status, await resp.json(), 400, "invalid_request")


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELAY_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "relay", "admin", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_cli_admin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    create_database(data)
    out = _cli(data, "--json", "workspaces", "create", "Acme", "--self-enrol", "--with-key")
    assert out.returncode == 0, out.stderr
    ws = json.loads(out.stdout)
    assert ws["key"].startswith("rwk_") and ws["allow_self_enrol"] is True

    spec = tmp_path / "helper.toml"
    spec.write_text('name = "Helper"\nvoice = "verse"\ninstructions = "Be brief."\n'
                    '[[tools]]\nname = "lookup"\nside = "server"\nwebhook_url = "https://hooks.invalid/x"\n')
    out = _cli(data, "--json", "assistants", "create", "--workspace", ws["id"], "--file", str(spec),
               "--dialect", "ga")
    assert out.returncode == 0, out.stderr
    asst = json.loads(out.stdout)
    assert asst["voice"] == "verse" and asst["dialect"] == "ga" and asst["tools"][0]["side"] == "server"
    spec_json = tmp_path / "a.json"
    spec_json.write_text(json.dumps({"name": "J", "model": "m1"}))
    out = _cli(data, "--json", "assistants", "create", "--file", str(spec_json))
    assert out.returncode == 0 and json.loads(out.stdout)["model"] == "m1"

    out = _cli(data, "--json", "clients", "create", "--workspace", ws["id"], "--assistant", asst["id"])
    assert out.returncode == 0, out.stderr
    cid = json.loads(out.stdout)["id"]
    out = _cli(data, "clients", "list")
    assert out.returncode == 0 and cid in out.stdout and "STATUS" in out.stdout  # a readable table
    for op, status in (("disable", "disabled"), ("enable", "active")):
        out = _cli(data, "--json", "clients", op, cid)
        assert json.loads(out.stdout)["status"] == status
    out = _cli(data, "--json", "clients", "reset-secret", cid)
    assert json.loads(out.stdout)["enrolled"] is False
    out = _cli(data, "clients", "show", str(uuid.uuid4()))
    assert out.returncode == 1 and "not found" in out.stderr
    out = _cli(data, "assistants", "create", "--name", "Bad", "--provider", "nope")
    assert out.returncode == 1 and "provider" in out.stderr
