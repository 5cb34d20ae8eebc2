"""Whatever devices and upstreams send, the core never raises, and the call still plays afterwards."""

from __future__ import annotations

import orjson
from bridge_helpers import Harness, make_assistant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.bridge import CallCore, EndCall
from relay.bridge.core import DEVICE_EVENTS
from relay.upstream import dialect as dl

UPSTREAM_TYPES = sorted({
    "response.audio.delta", "response.output_audio.delta", "response.audio.done", "response.created",
    "response.done", "response.output_item.done", "response.function_call_arguments.done",
    "input_audio_buffer.speech_started", "error", "session.created", "session.updated",
    "conversation.item.created", "conversation.item.added", "conversation.item.done",
    "conversation.item.input_audio_transcription.completed", "response.audio_transcript.done",
    "response.text.done", "response.content_part.added", "x.unknown",
})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["delta", "item_id", "response_id", "item", "response", "session", "error",
                               "call_id", "name", "arguments", "transcript", "text", "part", "event_id",
                               "audio", "audio_end_ms"])


def events(types: list[str]) -> st.SearchStrategy[dict]:
    return st.builds(lambda t, extra: {**extra, "type": t}, st.sampled_from(types),
                     st.dictionaries(field_names, json_values, max_size=5))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ups=st.lists(events(UPSTREAM_TYPES), max_size=12),
       devs=st.lists(events(sorted(DEVICE_EVENTS) + ["nope"]), max_size=12),
       ga_up=st.booleans())
def test_core_survives_arbitrary_events(ups: list[dict], devs: list[dict], ga_up: bool) -> None:
    core = CallCore(make_assistant(dialect="ga" if ga_up else "beta"), now=0.0)
    h = Harness(core)
    core.on_upstream_opened(0.0)
    for up, dev in zip(ups, devs + [{}] * len(ups), strict=False):
        h.up(up)
        if dev:
            h.dev(orjson.dumps(dev))
        h.tick(1)
    for dev in devs[len(ups):]:
        h.dev(orjson.dumps(dev))
    assert not any(isinstance(a, EndCall) for a in h.actions)
    # the call still works: a fresh response is heard
    h.up({"type": "response.done", "response": {"id": "fz_prev"}})
    h.up({"type": "input_audio_buffer.speech_started"})  # flushes whatever the fuzz queued
    ev = Harness.audio("fz_item", "fz_resp", 40, value=99)
    if ga_up:
        ev = dl.translate(ev, dl.BETA, dl.GA)[0]
    h.up({"type": "response.created", "response": {"id": "fz_resp"}})
    h.up(ev)
    frames = h.tick(2)
    assert frames[0] == (99).to_bytes(2, "little") * 480
