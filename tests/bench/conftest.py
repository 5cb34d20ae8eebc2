"""A real relay (in this process) whose default assistant is the local assistant in a given mode."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from relay.assistant import start_local_assistant
from relay.media import ice
from relay.settings import load_settings
from relay.web.app import create_app


@pytest.fixture
async def relay_url_for(tmp_path):
    """``await relay_url_for("relay-short")`` -> base URL of a relay using that local-assistant model."""
    cleanups = []

    async def start(model: str) -> str:
        runner, assistant_url = await start_local_assistant("127.0.0.1", 0)
        ice.configure_host_addresses(["127.0.0.1"])
        settings = load_settings(
            environ={},
            data_dir=str(tmp_path / f"relay-{len(cleanups)}"),
            demo_mode=True,
            ice_host_addresses=["127.0.0.1"],
            upstream_url=assistant_url,
            upstream_provider="compatible",
            upstream_model=model,
            log_format="text",
        )
        server = TestServer(create_app(settings), host="127.0.0.1")
        await server.start_server()
        cleanups.append((server, runner))
        return str(server.make_url("")).rstrip("/")

    yield start
    for server, runner in cleanups:
        await server.close()
        await runner.cleanup()
    ice.configure_host_addresses([])


@pytest.fixture
async def loopback_relay_url(relay_url_for):
    return await relay_url_for("relay-loopback")
