"""A real `relay serve` process: a device calls it, hears its echo, and SIGTERM drains the call."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from relay.client import RelayClient, encode_pcm16_to_opus
from tests.conftest import free_port
from tests.e2e.audio import RATE_HZ, Capture, bursts, dominant_hz


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)


async def test_relay_serve_call_and_sigterm_drain(tmp_path):
    port = free_port()
    env = {**os.environ, "RELAY_PORT": str(port), "RELAY_DATA_DIR": str(tmp_path / "data"),
           "RELAY_DEMO_MODE": "true", "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1", "RELAY_SHUTDOWN_TIMEOUT_S": "0.5",
           "RELAY_LOG_FORMAT": "json"}
    log = open(tmp_path / "relay.log", "wb")  # noqa: ASYNC230 -- a log file handed to the child process
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "relay", "serve", env=env,
                                                stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while True:
                    try:
                        async with http.get(base + "/healthz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
        capture, events = Capture(), []
        device = RelayClient(base, "7c9e6679-7425-40de-944b-e07fc1f90ae7", "x" * 40, demo=True,
                             host_addresses=["127.0.0.1"])
        signal_pcm = bursts([(0.3, 0.6, 550.0)], total_s=1.5)
        await device.connect(audio_source=encode_pcm16_to_opus(signal_pcm, RATE_HZ), on_audio=capture,
                             on_event=events.append)
        await wait_until(lambda: "output_audio_buffer.stopped" in [e["type"] for e in events])
        echo = capture.segment_samples(capture.segments()[0])
        assert abs(dominant_hz(echo, capture.rate_hz) - 550) < 10
        proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: any(e["type"] == "error" and e["error"]["code"] == "server_shutdown"
                                     for e in events), 15)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await device.hangup()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
    text = (tmp_path / "relay.log").read_text()
    assert "call started" in text and "call ended" in text and "x" * 40 not in text  # the secret is never logged
