"""Admin output for people: ISO 8601 dates, integer counts, ``--json`` after the command,
``--workspace`` by id or name, ``relay admin usage``, and the live calls of a running server
(``/admin/v1/calls`` and ``relay admin calls list|end``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
import uuid
from pathlib import Path

import aiohttp

from relay.client import RelayClient
from relay.settings import load_settings
from relay.store import usage as usage_repo
from relay.store.db import Database
from tests.foundation.live_relay import clean_env, live_relay

from .helpers import assert_error

TOKEN = "admin-" + "o" * 40
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _cli(tmp_path: Path, *args: str):
    import subprocess
    import sys

    if not (tmp_path / "data").exists():  # a database made as relay serve makes it (admin commands may not create one)
        asyncio.run(_create_database(tmp_path))
    env = {**clean_env(), "RELAY_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "relay", "admin", *args], env=env, capture_output=True, text=True,
                          timeout=60)


async def _create_database(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    db = await Database.connect(load_settings(environ={}, data_dir=str(tmp_path / "data")).effective_database_url)
    try:
        await db.migrate()
    finally:
        await db.close()


def test_json_after_the_command_workspace_by_name_and_iso_dates(tmp_path: Path) -> None:
    made = _cli(tmp_path, "workspaces", "create", "Acme", "--with-key", "--json")  # --json after the command
    assert made.returncode == 0, made.stderr
    ws = json.loads(made.stdout)
    assert ISO.match(ws["created_at"]), ws
    client = json.loads(_cli(tmp_path, "clients", "create", "--workspace", "Acme", "--json").stdout)
    assert client["workspace_id"] == ws["id"] and ISO.match(client["created_at"])
    listed = json.loads(_cli(tmp_path, "clients", "list", "--workspace", "Acme", "--json").stdout)
    assert [c["id"] for c in listed] == [client["id"]]
    before = json.loads(_cli(tmp_path, "--json", "clients", "list").stdout)  # before the command still works
    assert client["id"] in [c["id"] for c in before]
    plain = _cli(tmp_path, "clients", "show", client["id"]).stdout  # the key/value view, not JSON
    assert re.search(r"^created_at\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", plain, re.M), plain
    shown = json.loads(_cli(tmp_path, "workspaces", "show", "Acme", "--json").stdout)
    assert shown["id"] == ws["id"]
    # an ambiguous name is refused with the ids to choose from; an unknown one names what was asked
    _cli(tmp_path, "workspaces", "create", "Acme")
    twice = _cli(tmp_path, "clients", "list", "--workspace", "Acme")
    assert twice.returncode == 1 and "2 workspaces are named 'Acme'" in twice.stderr and ws["id"] in twice.stderr
    missing = _cli(tmp_path, "clients", "create", "--workspace", "Nowhere")
    assert missing.returncode == 1 and "no workspace with the id or name 'Nowhere'" in missing.stderr
    assert "Traceback" not in twice.stderr + missing.stderr


def test_usage_per_workspace_client_and_day(tmp_path: Path) -> None:
    assert _cli(tmp_path, "workspaces", "create", "Acme").returncode == 0
    a = json.loads(_cli(tmp_path, "clients", "create", "--workspace", "Acme", "--json").stdout)["id"]
    b = json.loads(_cli(tmp_path, "clients", "create", "--workspace", "Acme", "--json").stdout)["id"]
    ws = json.loads(_cli(tmp_path, "workspaces", "show", "Acme", "--json").stdout)["id"]
    now = time.time()
    yesterday = now - 86400

    async def seed() -> None:
        db = await Database.connect(load_settings(environ={}, data_dir=str(tmp_path / "data")).effective_database_url)
        try:
            for cid, t0, tokens in ((a, now - 100, 10), (a, now - 50, 5), (b, now - 40, 7), (a, yesterday, 3)):
                await usage_repo.record_usage(db, session_id=None, client_id=cid, workspace_id=ws, started_at=t0,
                                              ended_at=t0 + 12.5, input_tokens=tokens, output_tokens=2 * tokens,
                                              output_audio_s=4.0)
            await usage_repo.record_usage(db, session_id=None, client_id="other", workspace_id="default",
                                          started_at=now, ended_at=now + 1)
        finally:
            await db.close()

    asyncio.run(seed())
    rows = json.loads(_cli(tmp_path, "usage", "--workspace", "Acme", "--json").stdout)
    today = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")
    day_before = dt.datetime.fromtimestamp(yesterday, dt.UTC).strftime("%Y-%m-%d")
    got = {(r["day"], r["client_id"]): r for r in rows}
    assert set(got) == {(today, a), (today, b), (day_before, a)}
    assert got[(today, a)]["calls"] == 2 and got[(today, a)]["input_tokens"] == 15
    assert got[(today, a)]["output_tokens"] == 30 and got[(today, a)]["seconds"] == 25.0
    assert all(isinstance(r["calls"], int) and isinstance(r["input_tokens"], int) for r in rows)
    assert rows[0]["day"] == today and rows[-1]["day"] == day_before  # newest day first
    one_day = json.loads(_cli(tmp_path, "usage", "--client", a, "--days", "1", "--json").stdout)
    assert [(r["day"], r["calls"]) for r in one_day] == [(today, 2)]
    table = _cli(tmp_path, "usage").stdout
    assert "DAY" in table and "other" in table and today in table
    assert _cli(tmp_path, "usage", "--days", "0").returncode == 1


async def test_http_dates_are_iso_and_usage_counts_integers(make_app) -> None:
    admin = await make_app(admin_token=TOKEN)
    made = await (await admin.post("/admin/v1/clients", json={}, headers={"Authorization": f"Bearer {TOKEN}"})).json()
    from tests.foundation.helpers import db_of

    await usage_repo.record_usage(db_of(admin), session_id=None, client_id=made["id"], started_at=100.0,
                                  ended_at=102.5, input_tokens=4)
    body = await (await admin.get(f"/admin/v1/clients/{made['id']}/usage",
                                  headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert body["totals"] == {"calls": 1, "input_tokens": 4, "output_tokens": 0, "seconds": 2.5}
    assert isinstance(body["totals"]["calls"], int)
    assert body["data"][0]["started_at"] == "1970-01-01T00:01:40Z" and body["data"][0]["ended_at"] == "1970-01-01T00:01:42Z"
    listed = await (await admin.get("/admin/v1/clients", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert ISO.match(listed["data"][0]["created_at"]) and listed["data"][0]["last_seen_at"] is None
    ws = await (await admin.get("/admin/v1/workspaces/default", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert ws["created_at"] == "1970-01-01T00:00:00Z"


async def _wait_for(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)


async def test_live_calls_list_and_end_over_http_and_the_cli(tmp_path: Path) -> None:
    with live_relay(tmp_path, RELAY_ADMIN_TOKEN=TOKEN, RELAY_DEMO_MODE="true", RELAY_CONSOLE_LINK="false") as relay:
        client_id = str(uuid.uuid4())
        events: list[dict] = []
        device = RelayClient(relay.url, client_id, "s" * 40, demo=True, host_addresses=["127.0.0.1"])
        try:
            await device.connect(on_event=events.append)
            listed = await asyncio.to_thread(relay.run, "admin", "calls", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            calls = json.loads(listed.stdout)
            assert len(calls) == 1 and calls[0]["client_id"] == client_id and calls[0]["kind"] == "webrtc"
            assert ISO.match(calls[0]["started_at"]) and calls[0]["demo"] is True
            assert "instructions" not in listed.stdout
            table = await asyncio.to_thread(relay.run, "admin", "calls", "list")
            assert calls[0]["id"] in table.stdout and "DURATION_S" in table.stdout
            async with aiohttp.ClientSession() as http:
                async with http.get(relay.url + "/admin/v1/calls") as resp:  # no token
                    assert_error(resp.status, await resp.json(), 401, "invalid_admin_token")
                async with http.post(relay.url + "/admin/v1/calls/nope/end",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    assert_error(resp.status, await resp.json(), 404, "call_not_found")
            ended = await asyncio.to_thread(relay.run, "admin", "calls", "end", calls[0]["id"], "--json")
            assert ended.returncode == 0 and json.loads(ended.stdout)["ended"] is True
            await _wait_for(lambda: any(e.get("type") == "error" and e["error"]["code"] == "call_ended_by_operator"
                                        for e in events))
            await _wait_for(lambda: device.pc is not None and device.pc.connectionState in ("closed", "failed"))
            after = await asyncio.to_thread(relay.run, "admin", "calls", "list", "--json")
            assert json.loads(after.stdout) == []
            again = await asyncio.to_thread(relay.run, "admin", "calls", "end", calls[0]["id"])
            assert again.returncode == 1 and "404 call_not_found" in again.stderr
        finally:
            await device.hangup()
    no_token = {k: v for k, v in relay.env.items() if k != "RELAY_ADMIN_TOKEN"}
    refused = relay.run("admin", "calls", "list", env=no_token)
    assert refused.returncode == 1 and "RELAY_ADMIN_TOKEN" in refused.stderr
    gone = relay.run("admin", "calls", "list")  # the server has stopped
    assert gone.returncode == 1 and "cannot reach the server" in gone.stderr and "Traceback" not in gone.stderr
