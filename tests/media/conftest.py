"""Media-plane test fixtures: relay's peers gather on 127.0.0.1 (the test devices do too: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.media import ice

OFFERS = Path(__file__).parent / "offers"


@pytest.fixture(autouse=True)
def loopback_ice():
    ice.configure_host_addresses(["127.0.0.1"])
    yield
    ice.configure_host_addresses([])


def golden_offer(name: str) -> str:
    """Offers of real devices: ``chromium156_captured`` was captured from headless Chromium 156
    (audio + data channel, gathered; its candidates are the capture machine's); chrome, firefox,
    safari and the two ESP32 ones are written after those clients' offers."""
    return (OFFERS / f"{name}.sdp").read_text()
