"""Fixtures for the browser tests: a real relay server, a speech WAV, headless Chromium.

relay runs in-process as a real HTTP server (aiohttp AppRunner on 127.0.0.1, a free port)
in the test's event loop, so a test can also look at the server's state. Chromium runs as
a separate process with a fake microphone that plays a WAV spoken by espeak-ng.
"""

from __future__ import annotations

import subprocess
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from relay.settings import Settings, load_settings
from relay.web.app import create_app
from relay.web.console import static_dir

from .cdp import Browser, fake_microphone_flags

ARTIFACTS = Path(__file__).parent / "artifacts"
SPEECH_TEXT = "Hello relay. This is the browser console speaking. Can you hear me?"


@dataclass
class Server:
    app: web.Application
    runner: web.AppRunner
    url: str
    settings: Settings


async def start_server(app: web.Application, settings: Settings) -> Server:
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return Server(app=app, runner=runner, url=f"http://{host}:{port}", settings=settings)


@pytest.fixture
def relay_settings(tmp_path: Path) -> Settings:
    return load_settings(
        environ={},
        data_dir=str(tmp_path / "relay-data"),
        host="127.0.0.1",
        port=0,
        demo_mode=True,
        ice_host_addresses=["127.0.0.1"],
        log_level="debug",
    )


@pytest.fixture
async def relay_server(relay_settings: Settings) -> AsyncIterator[Server]:
    """relay itself (every area in AREAS), served on 127.0.0.1."""
    server = await start_server(create_app(relay_settings), relay_settings)
    try:
        yield server
    finally:
        await server.runner.cleanup()


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    """A second, unrelated origin that serves only the console's static files (for CORS)."""
    root = static_dir()
    app = web.Application()

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    app.router.add_get("/", index)
    app.router.add_static("/static/", root)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speech from espeak-ng (mono PCM16 WAV), then silence long enough for server VAD to end the turn."""
    work = tmp_path_factory.mktemp("speech")
    raw = work / "raw.wav"
    out = work / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), SPEECH_TEXT], check=True, timeout=60)
    with wave.open(str(raw), "rb") as src:
        params = src.getparams()
        speech = src.readframes(src.getnframes())
    assert params.sampwidth == 2 and params.nchannels == 1, params
    lead_in = b"\0\0" * int(params.framerate * 0.2)
    tail = b"\0\0" * int(params.framerate * 2.5)
    with wave.open(str(out), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(params.framerate)
        dst.writeframes(lead_in + speech + tail)
    return out


@pytest.fixture
async def browser(tmp_path: Path, speech_wav: Path) -> AsyncIterator[Browser]:
    b = await Browser.launch(tmp_path / "chromium-profile", fake_microphone_flags(speech_wav))
    try:
        yield b
    finally:
        await b.close()
