"""werift (pure TypeScript) and node-datachannel (libdatachannel) devices call relay (npm packages)."""

from __future__ import annotations

import pytest

from .conftest import assert_call_and_echo, run_node_stack

pytestmark = pytest.mark.slow


async def test_werift_call(relay, tmp_path) -> None:
    result = await run_node_stack("werift_client.cjs", relay, tmp_path)
    assert_call_and_echo(result)


async def test_node_datachannel_call(relay, tmp_path) -> None:
    result = await run_node_stack("ndc_client.cjs", relay, tmp_path)
    assert_call_and_echo(result)
