"""Malformed upstream events (a field of the wrong JSON type) are dropped and counted, never forwarded
to devices or acted on (issue 14, item 9); well-formed ones, known or not, still pass."""

from __future__ import annotations

from typing import Any

import pytest
from bridge_helpers import Harness, device_events, make_assistant, types

from relay.bridge import CallCore, EndCall, shapes
from relay.upstream import dialect as dl


@pytest.mark.parametrize("event", [
    {"type": "response.done", "response": "str"},
    {"type": "response.done", "response": {"id": 5}},
    {"type": "response.done", "response": {"id": "r", "usage": "lots"}},
    {"type": "response.done", "response": {"id": "r", "output": {"a": 1}}},
    {"type": "response.created", "response": []},
    {"type": "response.created"},
    {"type": "response.output_item.done", "item": "call"},
    {"type": "response.output_item.done", "item": {"type": "function_call", "name": ["lookup_order"]}},
    {"type": "conversation.item.created", "item": None},
    {"type": "session.updated", "session": "s"},
    {"type": "error", "error": "boom"},
    {"type": "response.audio_transcript.delta", "delta": 5},
    {"type": "response.audio.delta", "delta": ["AAAA"]},
    {"type": "response.text.done", "text": None},
    {"type": "response.function_call_arguments.done", "call_id": 5, "arguments": "{}"},
    {"type": "x.future_event", "item_id": 7},
    {"type": "x.future_event", "event_id": {"a": 1}},
    {"type": "input_audio_buffer.speech_started", "output_index": "0"},
])
@pytest.mark.parametrize("dialect", [dl.BETA, dl.GA])
def test_malformed_upstream_events_are_dropped_and_counted(event: dict[str, Any], dialect: str) -> None:
    core = CallCore(make_assistant(dialect=dialect), now=0.0)
    h = Harness(core)
    core.on_upstream_opened(0.0)
    h.drain()
    h.up({"type": "response.created", "response": {"id": "r"}})
    wire = dl.translate(event, dl.BETA, dialect)[0] if dialect == dl.GA else event
    out = h.up(wire)
    assert device_events(out) == [] and not any(isinstance(a, EndCall) for a in out)
    assert core.upstream_events_invalid == 1
    assert core.active_response == "r"  # not acted on either
    # the call goes on: a well-formed event still passes
    assert types(device_events(h.up({"type": "response.done", "response": {"id": "r", "status": "completed"}}))) \
        == ["response.done"]
    assert core.active_response is None and core.upstream_events_invalid == 1


@pytest.mark.parametrize("event", [
    {"type": "response.done", "response": {"id": "r", "usage": None, "status_details": None, "output": []}},
    {"type": "conversation.item.created", "previous_item_id": None, "item": {"id": "i", "type": "message"}},
    {"type": "x.future_event", "anything": [1, {"b": None}]},
    {"type": "rate_limits.updated", "rate_limits": []},
    {"type": "input_audio_buffer.committed", "item_id": "i", "previous_item_id": "h"},
])
def test_well_formed_events_pass(event: dict[str, Any]) -> None:
    assert shapes.problem(event) is None
    h = Harness(CallCore(make_assistant(), now=0.0))
    h.core.on_upstream_opened(0.0)
    h.drain()
    assert device_events(h.up(event))[0]["type"] == event["type"]
    assert h.core.upstream_events_invalid == 0
