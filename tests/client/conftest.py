"""A real relay on 127.0.0.1 for the SDK's end-to-end tests (its built-in local assistant, demo mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from relay.media import ice
from relay.settings import load_settings
from relay.web.app import create_app

LOOPBACK = ["127.0.0.1"]


@pytest.fixture
async def relay_url(tmp_path) -> AsyncIterator[str]:
    ice.configure_host_addresses(LOOPBACK)
    settings = load_settings(
        environ={}, data_dir=str(tmp_path / "relay"), demo_mode=True, ice_host_addresses=LOOPBACK, log_format="text"
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()
    ice.configure_host_addresses([])


@pytest.fixture
def relay_kwargs() -> dict[str, Any]:
    return {"host_addresses": LOOPBACK}
