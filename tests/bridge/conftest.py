"""Fixtures for the call core tests (helpers live in bridge_helpers.py)."""

from __future__ import annotations

import pytest
from bridge_helpers import Harness, make_assistant

from relay.bridge import CallCore


@pytest.fixture
def harness() -> Harness:
    core = CallCore(make_assistant(), now=0.0, max_call_s=600, recycle_after_s=100)
    h = Harness(core)
    core.on_upstream_opened(0.0)
    h.drain()
    return h
