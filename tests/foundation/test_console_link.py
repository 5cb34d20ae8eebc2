"""The console link of ``relay serve``: the default workspace's key on first run (hash stored, plain
key in ``<data_dir>/workspace-key`` 0600), printed on stdout only, self-enrolment with it, restarts,
a missing or stale key file, ``relay admin workspaces rotate-key default``."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from relay.console_link import base_url, console_url, key_path, prepare, read_key_file
from relay.store import workspaces as workspaces_repo
from relay.store.db import Database
from tests.conftest import free_port

from .helpers import new_secret

LINK_RE = re.compile(r"^Console: (http://127\.0\.0\.1:(\d+))/#workspace_key=(rwk_[A-Za-z0-9_-]{43})$")


# --- the store side (SQLite and PostgreSQL) -------------------------------------------------------


async def _key_hash(db: Database) -> str | None:
    row = await db.fetchone("SELECT key_hash FROM workspaces WHERE id = 'default'")
    assert row is not None
    return row["key_hash"]


async def test_first_run_issues_a_hashed_key_and_a_0600_file(db: Database, tmp_path: Path) -> None:
    data = tmp_path / "data"
    before = await workspaces_repo.get(db, "default")
    assert not before.has_key and not before.allow_self_enrol  # the migration's workspace: locked

    link = await prepare(db, data)
    assert link.created and link.self_enrol and link.note == "" and link.key
    path = key_path(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == link.key
    assert await _key_hash(db) == workspaces_repo.key_digest(link.key) != link.key  # only the hash is stored
    ws = await workspaces_repo.by_key(db, link.key)
    assert ws is not None and ws.id == "default" and ws.allow_self_enrol
    assert [p.name for p in data.iterdir()] == ["workspace-key"]  # no temporary file left behind

    again = await prepare(db, data)  # a restart: the same key, nothing changed
    assert again.key == link.key and not again.created and again.note == ""
    assert await _key_hash(db) == workspaces_repo.key_digest(link.key)


async def test_missing_key_file_leaves_the_hash_and_says_how_to_rotate(db: Database, tmp_path: Path) -> None:
    first = await prepare(db, tmp_path)
    key_path(tmp_path).unlink()
    link = await prepare(db, tmp_path)
    assert link.key is None and "rotate-key default" in link.note and "missing" in link.note
    assert first.key not in link.note  # type: ignore[operator]
    assert await _key_hash(db) == workspaces_repo.key_digest(first.key or "")  # left alone
    assert not key_path(tmp_path).exists()


async def test_stale_key_file_is_not_printed(db: Database, tmp_path: Path) -> None:
    first = await prepare(db, tmp_path)
    rotated = await workspaces_repo.rotate_key(db, "default")  # e.g. via the admin HTTP API
    link = await prepare(db, tmp_path)
    assert link.key is None and "rotate-key default" in link.note
    assert first.key not in link.note and rotated not in link.note  # type: ignore[operator]


async def test_operator_choice_of_no_self_enrol_is_kept(db: Database, tmp_path: Path) -> None:
    first = await prepare(db, tmp_path)
    await workspaces_repo.update(db, "default", allow_self_enrol=False)
    link = await prepare(db, tmp_path)
    assert link.key == first.key and not link.self_enrol and "--self-enrol" in link.note
    assert not (await workspaces_repo.get(db, "default")).allow_self_enrol


async def test_no_default_workspace_no_link(db: Database, tmp_path: Path) -> None:
    await workspaces_repo.delete(db, "default")
    link = await prepare(db, tmp_path)
    assert link.key is None and "does not exist" in link.note
    assert await workspaces_repo.find(db, "default") is None and not key_path(tmp_path).exists()


async def test_key_file_checks(tmp_path: Path) -> None:
    path = tmp_path / "workspace-key"
    assert read_key_file(path) is None
    path.write_text("not a key\n")
    assert read_key_file(path) is None
    path.write_text("rwk_" + "a" * 2000)
    assert read_key_file(path) is None  # bounded read
    path.write_text("rwk_abc\n")
    path.chmod(0o644)
    assert read_key_file(path) == "rwk_abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened
    link = tmp_path / "link"
    link.symlink_to(path)
    assert read_key_file(link) is None  # never follows a symlink


def test_link_addresses() -> None:
    assert base_url("", "127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert base_url("", "0.0.0.0", 8080) == "http://127.0.0.1:8080"  # noqa: S104
    assert base_url("", "::", 9) == "http://[::1]:9"
    assert base_url("https://relay.example.com/", "0.0.0.0", 8080) == "https://relay.example.com"  # noqa: S104
    assert console_url("http://h:1", "rwk_a-b_c") == "http://h:1/#workspace_key=rwk_a-b_c"


# --- a real `relay serve` process -----------------------------------------------------------------


def _env(data: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update({"RELAY_PORT": str(port), "RELAY_DATA_DIR": str(data), "RELAY_LOG_FORMAT": "json",
                "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1", "RELAY_SHUTDOWN_TIMEOUT_S": "3", **extra})
    return env


class Serve:
    """``relay serve`` with stdout and stderr (the logs) in separate files."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str]) -> None:
        self.out = tmp / f"{name}.out"
        self.err = tmp / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "relay", "serve"], env=env, stdout=out, stderr=err)

    def wait_for_stdout_line(self, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.out.read_text().splitlines()
            if lines:
                return lines[0]
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, self.err.read_text()
            time.sleep(0.1)

    def wait_ready(self, base: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, self.err.read_text()
            try:
                if _post(base + "/readyz", {}, None, method="GET")[0] == 200:
                    return
            except OSError:
                assert time.monotonic() < deadline, self.err.read_text()
                time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise
        return self.proc.returncode


def _post(url: str, headers: dict[str, str], body: Any, method: str = "POST") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 (loopback)
                                 headers={**headers, **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _session(base: str, client_id: str, secret: str, key: str | None = None, **extra: str) -> tuple[int, Any]:
    headers = {"X-Client-Id": client_id, "X-Client-Secret": secret, **extra}
    if key is not None:
        headers["X-Workspace-Key"] = key
    return _post(base + "/v1/realtime/sessions", headers, {"modalities": ["text", "audio"]})


def test_serve_prints_the_console_link_and_its_key_self_enrols(tmp_path: Path) -> None:
    data = tmp_path / "data"  # empty: the newcomer's first run
    port = free_port()
    env = _env(data, port)  # no RELAY_DEMO_MODE: demo stays off
    first = Serve(tmp_path, "first", env)
    try:
        line = first.wait_for_stdout_line()
        match = LINK_RE.match(line)
        assert match, line
        base, key = match.group(1), match.group(3)
        assert int(match.group(2)) == port
        first.wait_ready(base)
        path = data / "workspace-key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == key

        # the console's flow: a fresh UUID client + 32-byte secret + the key -> enrolled, session issued
        client_id, secret = str(uuid.uuid4()), new_secret()
        status, body = _session(base, client_id, secret, key)
        assert status == 200 and body["id"].startswith("session_"), body
        assert _session(base, client_id, secret)[0] == 200  # enrolled: the key is not needed any more

        # refused: a wrong key, no key (unknown client), demo mode (off by default), a wrong secret
        status, body = _session(base, str(uuid.uuid4()), new_secret(), "rwk_" + "x" * 43)
        assert status == 401 and body["error"]["code"] == "invalid_workspace_key", body
        status, body = _session(base, str(uuid.uuid4()), new_secret())
        assert status == 404 and body["error"]["code"] == "client_not_found", body
        status, body = _session(base, str(uuid.uuid4()), new_secret(), **{"X-Demo-Mode": "true"})
        assert status == 403 and body["error"]["code"] == "demo_mode_disabled", body
        status, body = _session(base, client_id, new_secret(), key)
        assert status == 401 and body["error"]["code"] == "invalid_secret", body
    finally:
        assert first.stop() == 0, first.err.read_text()
    assert first.out.read_text().splitlines() == [line]  # exactly one line on stdout
    logs = first.err.read_text()
    assert key not in logs and secret not in logs  # never through logging
    assert all(json.loads(x) for x in logs.splitlines() if x.strip())  # logs stay pure JSON lines

    second = Serve(tmp_path, "second", env)  # a restart prints the same link
    try:
        assert second.wait_for_stdout_line() == line
        second.wait_ready(base)
        assert _session(base, client_id, secret)[0] == 200
    finally:
        assert second.stop() == 0, second.err.read_text()
    assert key not in second.err.read_text()


def test_missing_key_file_then_rotate_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = _env(data, port)
    first = Serve(tmp_path, "first", env)
    try:
        old_key = LINK_RE.match(first.wait_for_stdout_line()).group(3)  # type: ignore[union-attr]
    finally:
        assert first.stop() == 0
    (data / "workspace-key").unlink()

    second = Serve(tmp_path, "second", env)
    try:
        base = f"http://127.0.0.1:{port}"
        second.wait_ready(base)
        assert second.out.read_text() == ""  # no link without the key
        # the stored hash was left alone: the old key still enrols
        assert _session(base, str(uuid.uuid4()), new_secret(), old_key)[0] == 200
    finally:
        assert second.stop() == 0
    warning = next(json.loads(x) for x in second.err.read_text().splitlines() if "console link" in x)
    assert warning["level"] in ("warning", "WARNING") and "relay admin workspaces rotate-key default" in warning["msg"]

    out = subprocess.run([sys.executable, "-m", "relay", "admin", "--json", "workspaces", "rotate-key", "default"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    new_key = json.loads(out.stdout)["key"]
    assert new_key != old_key and "workspace-key" in out.stderr and new_key not in out.stderr
    assert stat.S_IMODE((data / "workspace-key").stat().st_mode) == 0o600

    third = Serve(tmp_path, "third", env)
    try:
        assert third.wait_for_stdout_line() == f"Console: {base}/#workspace_key={new_key}"
        status, body = _session(base, str(uuid.uuid4()), new_secret(), old_key)
        assert status == 401 and body["error"]["code"] == "invalid_workspace_key"
    finally:
        assert third.stop() == 0


def test_console_link_off(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = Serve(tmp_path, "off", _env(data, port, RELAY_CONSOLE_LINK="false"))
    try:
        proc.wait_ready(f"http://127.0.0.1:{port}")
    finally:
        assert proc.stop() == 0
    assert proc.out.read_text() == "" and not (data / "workspace-key").exists()
    out = subprocess.run([sys.executable, "-m", "relay", "admin", "--json", "workspaces", "show", "default"],
                         env=_env(data, port), capture_output=True, text=True, timeout=60)
    ws = json.loads(out.stdout)
    assert ws["has_key"] is False and ws["allow_self_enrol"] is False  # untouched
