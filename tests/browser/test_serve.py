"""The newcomer's path: `relay serve` (a separate process, configured by RELAY_* only), open the
page it serves, press Connect, hear the local assistant."""

from __future__ import annotations

import asyncio
import os
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_DATA_DIR": str(tmp_path / "relay-data"),
        "RELAY_DEMO_MODE": "true",
        "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1",
        "RELAY_LOG_FORMAT": "text",
    }
    log_path = tmp_path / "relay.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
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


async def test_relay_serve_hosts_the_console_and_takes_a_call(
    relay_process: tuple[str, subprocess.Popen[bytes]], browser: Browser
) -> None:
    url, proc = relay_process
    await _wait_healthy(url, proc)
    page = browser.page
    await page.navigate(url + "/?demo=1")
    await page.wait_for("window.__relayConsole && window.__relayConsole.state.ready")
    assert await page.evaluate("document.title") == "relay console"

    assert await page.evaluate("window.__relayConsole.connect()", timeout_s=60) is True, page.console
    await page.wait_for(f"({STATE}.steps.channel || {{}}).status === 'done'", timeout_s=20)
    await page.wait_for(f"{STATE}.remoteEnergyFrames >= 10 && {STATE}.remotePeak > 0.05", timeout_s=45)
    assert await page.evaluate("window.__relayConsole.hangup()") is True

    # A graceful stop after the call: SIGTERM drains and exits cleanly.
    proc.send_signal(signal.SIGTERM)
    for _ in range(300):
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    assert proc.returncode == 0
