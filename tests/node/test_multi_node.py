"""Two nodes on one PostgreSQL: ``relay serve --workers 2`` on 127.0.0.2 and on 127.0.0.3, real calls
from the device SDK. A device enrolled through one node is accepted by the other (session on one, SDP
on the other); the per-client cap and the failed-secret throttle hold fleet-wide; usage from both nodes adds up; a node killed with
SIGKILL mid-call loses its calls' leases (the cap frees) while the other keeps serving; a node drained
with SIGTERM ends its live call with ``server_shutdown``, writes its usage and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import pytest

from relay.client import RelayClient, RelayError
from tests.conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "fleet-admin-token-" + "f" * 24
LEASE_S = 3.0
FAIL_LIMIT = 2  # failed secrets per client id per minute; per address: 20


class Node:
    def __init__(self, name: str, host: str, db_url: str, tmp: Path) -> None:
        self.name, self.host = name, host
        home = tmp / name
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "XDG_"))}
        env.update({"PYTHONPATH": str(ROOT), "HOME": str(home), "RELAY_LOG_FORMAT": "text",
                    "RELAY_HOST": host, "RELAY_PORT": str(free_port()), "RELAY_DATABASE_URL": db_url,
                    "RELAY_DATA_DIR": str(home / "data"), "RELAY_NODE_NAME": name, "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
                    "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1", "RELAY_CALL_LEASE_S": str(LEASE_S),
                    "RELAY_MAX_CALLS_PER_CLIENT": "1", "RELAY_SHUTDOWN_TIMEOUT_S": "4",
                    "RELAY_AUTH_FAIL_LIMIT": str(FAIL_LIMIT), "RELAY_TRUST_FORWARDED_FOR": "true",
                    "RELAY_CONSOLE_LINK": "false"})
        self.err = home / "serve.err"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "relay", "serve", "--workers", "2"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.base = f"http://{host}:{env['RELAY_PORT']}"
        deadline = time.monotonic() + 90
        while "with 2 workers" not in self.err.read_text():
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, self.err.read_text()
            time.sleep(0.1)

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.base + path, method=method, data=json.dumps(body or {}).encode(),
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return json.loads(resp.read())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _device(base: str, client_id: str, secret: str) -> RelayClient:
    return RelayClient(base, client_id, secret, host_addresses=["127.0.0.1"])


async def _live(db_url: str, client_id: str) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT node FROM live_calls WHERE client_id = $1 AND lease_until > $2",
                                client_id, time.time())
        return [r["node"] for r in rows]
    finally:
        await conn.close()


def _post(url: str, headers: dict[str, str], method: str = "POST") -> tuple[int, dict, dict]:
    """One request on a new connection (the kernel picks the worker), its status, JSON body and headers."""
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def _brute_force_is_throttled_fleet_wide(a: Node, b: Node, cid: str, secret: str) -> None:
    """Failed secrets spread over both nodes (4 workers) add up to the limit, per client id and per
    address, as in one process; then the documented 429 with Retry-After, in each API's shape."""
    device, attacker = {"X-Forwarded-For": "192.0.2.10"}, {"X-Forwarded-For": "198.51.100.7"}
    right = {"X-Client-Id": cid, "X-Client-Secret": secret}
    assert _post(a.base + "/v1/realtime/sessions", {**right, **device})[0] == 200  # the device's address
    for i in range(FAIL_LIMIT):
        status, body, _ = _post((a, b)[i % 2].base + "/v1/realtime/sessions",
                                {**right, "X-Client-Secret": secrets.token_hex(24), **attacker})
        assert (status, body["error"]["code"]) == (401, "invalid_secret")
    for node in (a, b):  # over budget on every worker of every node: refused before the secret is checked
        status, body, headers = _post(node.base + "/v1/realtime/sessions", {**right, **attacker})
        assert status == 429 and body == {"error": {"message": "Too many failed attempts; retry later",
                                                    "type": "rate_limit_error", "code": "rate_limited"}}
        assert 1 <= int(headers["Retry-After"]) <= 60
    for node in (b, a):  # ... but from the address it authenticated from, its secret still passes
        assert _post(node.base + "/v1/realtime/sessions", {**right, **device})[0] == 200
    # per address (20): wrong workspace keys through the app API on both nodes, any client id
    for i in range(FAIL_LIMIT * 10 - FAIL_LIMIT):
        status, body, _ = _post((a, b)[i % 2].base + "/v1/app/voices",
                                {"X-Client-Id": str(uuid.uuid4()), "X-Workspace-Key": "wk_" + "0" * 40,
                                 **attacker}, method="GET")
        assert (status, body["detail"]["code"]) == (401, "INVALID_WORKSPACE_KEY"), body
    status, body, headers = _post(a.base + "/v1/app/voices", {"X-Client-Id": str(uuid.uuid4()),
                                                               "X-Workspace-Key": "wk_" + "0" * 40, **attacker},
                                  method="GET")
    assert status == 429 and body["detail"]["code"] == "RATE_LIMITED" and 1 <= int(headers["Retry-After"]) <= 60
    status, body, headers = _post(b.base + "/v1/realtime/sessions",
                                  {"X-Client-Id": str(uuid.uuid4()), "X-Client-Secret": secret, **attacker})
    assert (status, body["error"]["code"]) == (429, "rate_limited") and "Retry-After" in headers


async def _usage(db_url: str, client_id: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM usage WHERE client_id = $1", client_id)
    finally:
        await conn.close()


async def test_two_nodes_share_one_postgresql(tmp_path: Path, pg_database_url: str) -> None:
    a = Node("node-a", "127.0.0.2", pg_database_url, tmp_path)
    b = Node("node-b", "127.0.0.3", pg_database_url, tmp_path)
    devices: list[RelayClient] = []
    try:
        # enrolled through node a (admin + first session there), accepted by node b (SDP there)
        cid = (await asyncio.to_thread(a.admin, "POST", "/admin/v1/clients", {"name": "kitchen"}))["id"]
        secret = secrets.token_hex(24)
        first = _device(a.base, cid, secret)
        devices.append(first)
        await first.create_session()
        first.base_url = b.base
        await first.connect()
        assert await _live(pg_database_url, cid) == ["node-b"]
        # the per-client cap (1) holds fleet-wide: the same client is refused on node a
        again = _device(a.base, cid, secret)
        with pytest.raises(RelayError) as refused:
            await again.connect()
        await again.hangup()
        assert refused.value.status == 429 and refused.value.code == "too_many_calls"
        await first.hangup()
        async with asyncio.timeout(10):
            while await _live(pg_database_url, cid):  # noqa: ASYNC110 - polling the store
                await asyncio.sleep(0.1)
        on_a = _device(a.base, cid, secret)
        devices.append(on_a)
        await on_a.connect()
        await on_a.hangup()
        async with asyncio.timeout(10):  # usage from both nodes adds up
            while await _usage(pg_database_url, cid) < 2:  # noqa: ASYNC110 - polling the store
                await asyncio.sleep(0.1)
        assert await _usage(pg_database_url, cid) == 2

        hall = (await asyncio.to_thread(b.admin, "POST", "/admin/v1/clients", {"name": "hall"}))["id"]
        await asyncio.to_thread(_brute_force_is_throttled_fleet_wide, a, b, hall, secrets.token_hex(24))

        # node b killed mid-call: its lease expires, the cap frees, node a keeps serving
        doomed = _device(b.base, cid, secret)
        devices.append(doomed)
        await doomed.connect()
        assert await _live(pg_database_url, cid) == ["node-b"]
        b.kill()
        with pytest.raises(RelayError):  # still counted until its lease has passed
            blocked = _device(a.base, cid, secret)
            devices.append(blocked)
            await blocked.connect()
        await asyncio.sleep(LEASE_S + 0.5)
        assert await _live(pg_database_url, cid) == []
        survivor = _device(a.base, cid, secret)
        devices.append(survivor)
        await survivor.connect()

        # node a drained with SIGTERM: the live call is ended with server_shutdown, usage written, exit 0
        a.proc.send_signal(signal.SIGTERM)
        error = await survivor.next_event("error", timeout_s=40)
        assert error["error"]["code"] == "server_shutdown"
        assert await asyncio.to_thread(a.proc.wait, 60) == 0
        assert await _usage(pg_database_url, cid) == 3  # the two calls above and the drained one
        assert await _live(pg_database_url, cid) == []
    finally:
        for device in devices:
            await device.hangup()
        a.kill()
        b.kill()
