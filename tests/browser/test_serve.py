"""The newcomer's path: `relay serve` (a separate process, configured by RELAY_* only, demo mode
off), open the console link it prints (the default workspace's key in the URL fragment), press
Connect: the page's new client enrols itself with that key and hears the local assistant."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from .cdp import Browser

pytestmark = pytest.mark.slow

STATE = "window.__relayConsole.state"
LINK_RE = re.compile(r"^Console: (http://127\.0\.0\.1:\d+/)#workspace_key=(rwk_[A-Za-z0-9_-]+)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_DATA_DIR": str(tmp_path / "relay-data"),  # empty: a first run
        "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1",
        "RELAY_LOG_FORMAT": "text",
    }  # no RELAY_DEMO_MODE: demo mode stays off


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    # stdout (the console link) and stderr (the logs) apart, to check the key never reaches the logs
    with open(tmp_path / "relay.out", "wb") as out_file, open(tmp_path / "relay.log", "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve"], env=_env(tmp_path, port), stdout=out_file, stderr=log_file
        )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            assert proc.poll() is None, "relay serve exited early"
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("relay serve did not become healthy")


async def _console_link(out_path: Path, proc: subprocess.Popen[bytes]) -> str:
    for _ in range(300):
        lines = (await asyncio.to_thread(out_path.read_text)).splitlines()
        if lines:
            return lines[0]
        assert proc.poll() is None, "relay serve exited early"
        await asyncio.sleep(0.1)
    raise TimeoutError("relay serve printed no console link")


async def test_relay_serve_console_link_takes_a_call_without_demo_mode(
    relay_process: tuple[str, subprocess.Popen[bytes]], browser: Browser, tmp_path: Path
) -> None:
    url, proc = relay_process
    await _wait_healthy(url, proc)
    line = await _console_link(tmp_path / "relay.out", proc)
    match = LINK_RE.match(line)
    assert match and match.group(1) == url + "/", line
    key = match.group(2)

    page = browser.page
    await page.navigate(line.removeprefix("Console: "))
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    assert await page.evaluate("document.title") == "relay console"
    seen = await page.evaluate(
        """({href: location.href, hash: location.hash,
             stored: localStorage.getItem('relay.console.workspaceKey'),
             field: document.getElementById('workspace-key').value,
             masked: document.getElementById('workspace-key').type,
             demo: document.getElementById('demo-mode').checked,
             clientId: document.getElementById('client-id').value,
             fromLink: window.__relayConsole.state.workspaceKeyFromLink})"""
    )
    # the key moved from the address bar into localStorage and the (masked) field
    assert seen["hash"] == "" and key not in seen["href"] and seen["href"] == url + "/", seen
    assert seen["stored"] == key and seen["field"] == key and seen["masked"] == "password", seen
    assert seen["demo"] is False and seen["fromLink"] is True, seen

    assert await page.evaluate("window.__relayConsole.connect()", timeout_s=60) is True, page.console
    assert await page.evaluate(f"{STATE}.sessionStatus") == 200
    await page.wait_for(f"({STATE}.steps.channel || {{}}).status === 'done'", timeout_s=20)
    await page.wait_for(f"{STATE}.remoteEnergyFrames >= 10 && {STATE}.remotePeak > 0.05", timeout_s=45)
    assert await page.evaluate("window.__relayConsole.hangup()") is True

    # the page's generated client enrolled itself in the default workspace (TOFU)
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "relay", "admin", "--json", "clients", "list", "--workspace", "default"],
        env=_env(tmp_path, 0), capture_output=True, text=True, timeout=60, check=True,
    )
    clients = {c["id"]: c for c in json.loads(listed.stdout)}
    assert clients[seen["clientId"]]["enrolled"] is True

    # A graceful stop after the call: SIGTERM drains and exits cleanly.
    proc.send_signal(signal.SIGTERM)
    for _ in range(300):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    assert proc.returncode == 0
    assert key not in (tmp_path / "relay.log").read_text()  # the key never reaches the logs
