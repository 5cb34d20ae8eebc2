"""``relay serve`` as a real process: zero-config start, JSON logs without secrets, JSON 400 for
oversized headers, graceful exit on SIGTERM; ``relay config --markdown`` and the README table."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from relay.settings import markdown_table
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "serve-admin-token-" + "z" * 20


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_serve_process(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update({"RELAY_PORT": str(port), "RELAY_DATA_DIR": str(tmp_path / "data"), "RELAY_LOG_FORMAT": "json",
                "RELAY_ADMIN_TOKEN": ADMIN_TOKEN, "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1",
                "RELAY_SHUTDOWN_TIMEOUT_S": "3"})
    log_path = tmp_path / "serve.log"
    out_path = tmp_path / "serve.out"  # stdout: the console link (relay.console_link), never logs
    with open(log_path, "wb") as log_fh, open(out_path, "wb") as out_fh:
        proc = subprocess.Popen([sys.executable, "-m", "relay", "serve"], env=env, stdout=out_fh, stderr=log_fh)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        assert status == 200 and body == {"status": "ready", "database": "sqlite"}
        assert (tmp_path / "data" / "relay.db").exists()  # zero config: SQLite in the data dir
        status, body = _get(f"http://127.0.0.1:{port}/admin/v1/clients")
        assert status == 401 and body["error"]["code"] == "invalid_admin_token"

        answer = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
        assert json.loads(payload)["error"]["code"] == "header_too_large"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log_path.read_text()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    messages = [rec["msg"] for rec in lines]
    assert "starting relay" in messages and "stopped" in messages
    assert any(m.startswith("shutting down") for m in messages)
    start = next(rec for rec in lines if rec["msg"] == "starting relay")
    assert start["settings"]["admin_token"] == "***" and start["settings"]["port"] == port
    access = [rec for rec in lines if rec["logger"] == "relay.access" and rec.get("path") == "/readyz"]
    assert access and access[0]["status"] == 200 and access[0]["request_id"]
    assert ADMIN_TOKEN not in log_path.read_text()
    assert out_path.read_text().startswith(f"Console: http://127.0.0.1:{port}/#workspace_key=rwk_")


def test_config_markdown_command() -> None:
    out = subprocess.run([sys.executable, "-m", "relay", "config", "--markdown"], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == markdown_table()
    assert "| `demo_mode` | `RELAY_DEMO_MODE` | `false` |" in out.stdout


def test_readme_table_is_generated() -> None:
    """The README's configuration table equals `relay config --markdown` (it cannot drift)."""
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"
    assert begin in readme and end in readme
    table = readme.split(begin, 1)[1].split(end, 1)[0].strip()
    assert table == markdown_table(), "README settings table is stale: run `python scripts/readme_table.py`"


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('port = "not a number"\n')
    out = subprocess.run([sys.executable, "-m", "relay", "serve", "--config", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "port" in out.stderr and "Traceback" not in out.stderr
