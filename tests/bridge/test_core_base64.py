"""The bridge's base64 (pybase64) against the standard library's: the same bytes for every valid delta,
and a delta that is not strict base64 is dropped (never played, never forwarded)."""

from __future__ import annotations

import base64
import os

import pytest

from relay.bridge import CallCore
from relay.models import Assistant


def core() -> CallCore:
    c = CallCore(Assistant(id="a", name="n", provider="local", model="relay-echo"), now=0.0, trim_above_ms=0)
    c.on_upstream_opened(0.0)
    c.drain_actions()
    return c


def delta(text: str) -> dict:
    return {"type": "response.audio.delta", "event_id": "e", "response_id": "r", "item_id": "i",
            "output_index": 0, "content_index": 0, "delta": text}


@pytest.mark.parametrize("size", [0, 1, 2, 3, 960, 1919, 1920, 4801])
def test_valid_deltas_play_the_same_bytes_as_the_stdlib_decodes(size: int) -> None:
    audio = os.urandom(size)
    c = core()
    c.on_upstream_event(delta(base64.b64encode(audio).decode()), 0.0)
    assert c.drain_actions() == []  # audio goes to the playout, not to the device
    c.on_upstream_event({"type": "response.audio.done", "item_id": "i"}, 0.0)
    frames = []
    while (frame := c.pull_frame(0.0)) is not None:
        frames.append(frame)
    played = b"".join(frames)
    assert played[:size] == audio and set(played[size:]) <= {0}  # the last frame padded with silence


@pytest.mark.parametrize("text", ["AAA", "A===", "AA AA", "AAAA\n", "AA*A", "AAAé", "-_-_", "AAAA="])
def test_deltas_that_are_not_strict_base64_are_dropped(text: str) -> None:
    c = core()
    c.on_upstream_event(delta(text), 0.0)
    assert c.drain_actions() == [] and c.buffered_ms == 0
