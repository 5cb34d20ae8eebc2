"""The backlog-trim setting reaches each WebRTC call's core (relay.bridge.trim does the work)."""

from __future__ import annotations

from types import SimpleNamespace

from relay.bridge import CallCore
from relay.media.plane import call_config
from relay.settings import load_settings


def test_setting_reaches_call_config_and_defaults_to_20_ms() -> None:
    device = SimpleNamespace(max_call_s=0, demo=False)
    assert call_config(load_settings(environ={}), device).playout_trim_above_ms == 20
    off = load_settings(environ={"RELAY_PLAYOUT_TRIM_ABOVE_MS": "0"})
    assert call_config(off, device).playout_trim_above_ms == 0


def test_core_builds_a_trimmer_only_when_enabled() -> None:
    from relay.default_assistant import resolve_default_assistant

    assistant = resolve_default_assistant(load_settings(environ={}))
    assert CallCore(assistant, now=0.0, trim_above_ms=20)._trim.above_ms == 20
    assert CallCore(assistant, now=0.0, trim_above_ms=0)._trim is None
