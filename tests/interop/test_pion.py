"""Pion WebRTC v3 (Go, Debian's golang-github-pion-webrtc.v3-dev, built offline in GOPATH mode) calls relay."""

from __future__ import annotations

import pytest

from .conftest import assert_call_and_echo, pion_binary, run_binary_stack

pytestmark = pytest.mark.slow


async def test_pion_call(relay, tmp_path) -> None:
    result = await run_binary_stack(await pion_binary(), relay, tmp_path)
    assert_call_and_echo(result)
