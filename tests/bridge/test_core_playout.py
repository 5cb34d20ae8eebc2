"""CallCore playout: output_audio_buffer emulation, barge-in with clamped truncates, never silent after."""

from __future__ import annotations

import base64

from bridge_helpers import Harness, device_events, make_assistant, types, upstream_events
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.bridge import CallCore, EndCall

FRAME = 960  # 20 ms of pcm16 at 24 kHz


def new_harness(**kw) -> Harness:
    core = CallCore(make_assistant(**kw), now=0.0)
    h = Harness(core)
    core.on_upstream_opened(0.0)
    h.drain()
    return h


def test_frames_started_and_stopped(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 50, value=1234))
    assert h.core.playing_response is None
    frames = h.tick(2)
    assert all(f is not None and len(f) == FRAME for f in frames)
    assert frames[0] == (1234).to_bytes(2, "little", signed=True) * (FRAME // 2)
    evs = device_events(h.actions)
    assert [e for e in types(evs) if e.startswith("output_audio_buffer")] == ["output_audio_buffer.started"]
    assert evs[-1]["response_id"] == "r1"
    # underrun before audio.done: no frame, but not stopped either
    assert h.tick(1) == [None]
    assert "output_audio_buffer.stopped" not in types(device_events(h.actions))
    # done: the last 10 ms play padded with silence, then stopped
    h.up({"type": "response.audio.done", "response_id": "r1", "item_id": "i1"})
    [last] = h.tick(1)
    assert last[:480] == (1234).to_bytes(2, "little", signed=True) * 240 and last[480:] == bytes(480)
    assert h.tick(1) == [None]
    evs = device_events(h.actions)
    assert types(evs).count("output_audio_buffer.stopped") == 1
    assert evs[-1] == {"type": "output_audio_buffer.stopped", "event_id": evs[-1]["event_id"], "response_id": "r1"}


def test_barge_in_flushes_and_truncates_at_played(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 1000))
    h.tick(10)  # 200 ms played
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 500, "item_id": "u1"})
    dev = device_events(out)
    assert types(dev) == ["output_audio_buffer.cleared", "input_audio_buffer.speech_started"]
    assert dev[0]["response_id"] == "r1"
    [trunc] = upstream_events(out)
    assert trunc == {"type": "conversation.item.truncate", "event_id": trunc["event_id"], "item_id": "i1",
                     "content_index": 0, "audio_end_ms": 200}
    assert h.core.buffered_ms == 0
    assert h.tick(1) == [None]
    # late deltas of the interrupted response never play
    h.up(h.audio("i1", "r1", 100))
    h.up(h.audio("i2", "r1", 100))
    assert h.core.buffered_ms == 0 and h.tick(3) == [None, None, None]


def test_barge_in_before_first_audio_sends_no_truncate(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u1"})
    assert upstream_events(out) == []
    assert types(device_events(out)) == ["input_audio_buffer.speech_started"]
    # audio received but not yet played: cleared, still no truncate
    h2 = new_harness()
    h2.start_response("r1", "i1")
    h2.up(h2.audio("i1", "r1", 300))
    out = h2.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u1"})
    assert upstream_events(out) == []
    assert types(device_events(out)) == ["output_audio_buffer.cleared", "input_audio_buffer.speech_started"]


def test_truncate_error_is_swallowed_and_next_response_plays(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 100))
    h.tick(2)
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 1, "item_id": "u"})
    [trunc] = upstream_events(out)
    err = {"type": "error", "event_id": "e", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                                        "message": "audio_end_ms is longer than the audio",
                                                        "param": None, "event_id": trunc["event_id"]}}
    assert h.up(err) == []
    # an error mentioning truncation without our event id is also swallowed
    assert h.up({"type": "error", "error": {"message": "Cannot truncate item"}}) == []
    # other errors still reach the device
    assert types(device_events(h.up({"type": "error", "error": {"message": "rate limited"}}))) == ["error"]
    assert not h.core.ended
    h.up({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}})
    h.start_response("r2", "i2")
    h.up(h.audio("i2", "r2", 40, value=-77))
    frames = h.tick(2)
    assert frames[0] == (-77).to_bytes(2, "little", signed=True) * (FRAME // 2)
    assert device_events(h.actions)[-1]["type"] == "output_audio_buffer.started"
    assert device_events(h.actions)[-1]["response_id"] == "r2"
    assert not any(isinstance(a, EndCall) for a in h.actions)


@settings(max_examples=150, deadline=None)
@given(
    received_ms=st.integers(0, 2000).map(lambda x: x - x % 10),
    chunk_ms=st.sampled_from([10, 20, 40, 100]),
    ticks=st.integers(0, 150),
    interleave=st.booleans(),
    g711=st.booleans(),
)
def test_barge_in_at_random_points(received_ms: int, chunk_ms: int, ticks: int, interleave: bool, g711: bool) -> None:
    """Whatever the timing, the truncate is min(played, received), skipped at 0, and the next response plays."""
    core = CallCore(make_assistant(), now=0.0, audio_format="g711_ulaw" if g711 else "pcm16")
    h = Harness(core)
    core.on_upstream_opened(0.0)
    h.drain()
    bpm = core.bytes_per_ms
    h.start_response("r1", "i1")
    sent = 0
    played_frames = 0
    for _ in range(ticks):
        if sent < received_ms:
            n = min(chunk_ms, received_ms - sent)
            h.up(Harness.audio("i1", "r1", n, value=0x55, rate_bpm=bpm))
            sent += n
        if interleave or sent >= received_ms:
            frame = h.tick(1)[0]
            if frame is not None:
                played_frames += 1
                assert len(frame) == 20 * bpm
    h.actions.clear()
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u1"})
    truncs = [e for e in upstream_events(out) if e["type"] == "conversation.item.truncate"]
    played_ms = played_frames * 20
    expected = min(played_ms, sent)
    if expected == 0:
        assert truncs == []
    else:
        assert [t["audio_end_ms"] for t in truncs] == [expected]
        assert truncs[0]["item_id"] == "i1"
    assert core.buffered_ms == 0
    # never silent afterwards
    h.up({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}})
    h.start_response("r2", "i2")
    h.up(Harness.audio("i2", "r2", 60, value=0x22, rate_bpm=bpm))
    h.up({"type": "response.audio.done", "response_id": "r2", "item_id": "i2"})
    frames = [f for f in h.tick(5) if f is not None]
    assert len(frames) == 3
    assert types(device_events(h.actions)).count("output_audio_buffer.started") == 1
    assert types(device_events(h.actions))[-1] == "output_audio_buffer.stopped"


def test_device_output_audio_buffer_clear(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 500))
    h.tick(5)
    out = h.dev({"type": "output_audio_buffer.clear"})
    assert types(device_events(out)) == ["output_audio_buffer.cleared"]
    ups = upstream_events(out)
    assert types(ups) == ["conversation.item.truncate", "response.cancel"]
    assert ups[0]["audio_end_ms"] == 100
    assert h.core.buffered_ms == 0


def test_device_response_cancel_stops_playback(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 500))
    h.tick(3)
    out = h.dev({"type": "response.cancel", "event_id": "c7"})
    assert types(upstream_events(out)) == ["conversation.item.truncate", "response.cancel"]
    assert upstream_events(out)[1]["event_id"] == "c7"
    assert types(device_events(out)) == ["output_audio_buffer.cleared"]
    assert h.tick(1) == [None]


def test_invalid_base64_delta_dropped(harness: Harness) -> None:
    out = harness.up({"type": "response.audio.delta", "item_id": "i", "response_id": "r", "delta": "***"})
    assert out == [] and harness.core.buffered_ms == 0
    good = base64.b64encode(bytes(960)).decode()
    harness.up({"type": "response.audio.delta", "item_id": "i", "response_id": "r", "delta": good})
    assert harness.core.buffered_ms == 20


def test_g711_frames_use_g711_silence() -> None:
    core = CallCore(make_assistant(), now=0.0, audio_format="g711_alaw")
    h = Harness(core)
    h.up(Harness.audio("i", "r", 10, value=0x11, rate_bpm=8))
    h.up({"type": "response.audio.done", "item_id": "i", "response_id": "r"})
    [frame] = h.tick(1)
    assert frame == bytes([0x11]) * 80 + bytes([0xD5]) * 80


def test_no_interrupt_when_assistant_disables_it() -> None:
    h = new_harness(turn_detection={"type": "server_vad", "interrupt_response": False})
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 200))
    h.tick(2)
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u"})
    assert types(device_events(out)) == ["input_audio_buffer.speech_started"]
    assert upstream_events(out) == [] and h.core.buffered_ms == 160


def test_device_truncate_errors_are_forwarded(harness: Harness) -> None:
    harness.dev({"type": "conversation.item.truncate", "event_id": "dev1", "item_id": "x", "audio_end_ms": 5})
    out = harness.up({"type": "error", "error": {"message": "Cannot truncate: item not found", "event_id": "dev1"}})
    assert types(device_events(out)) == ["error"]


def test_device_clear_when_idle_is_acknowledged(harness: Harness) -> None:
    out = harness.dev({"type": "output_audio_buffer.clear"})
    assert types(device_events(out)) == ["output_audio_buffer.cleared"]
    assert upstream_events(out) == []


def test_response_done_without_audio_done_still_stops(harness: Harness) -> None:
    h = harness
    h.start_response("r1", "i1")
    h.up(h.audio("i1", "r1", 30))
    h.up({"type": "response.done", "response": {"id": "r1", "status": "incomplete"}})
    frames = h.tick(3)
    assert frames[0] is not None and frames[1] is not None and frames[2] is None
    assert types(device_events(h.actions))[-1] == "output_audio_buffer.stopped"


def test_deltas_without_response_id_start_once(harness: Harness) -> None:
    h = harness
    ev = h.audio("i1", "r", 100)
    del ev["response_id"]
    h.up(ev)
    assert all(f is not None for f in h.tick(5))
    assert types(device_events(h.actions)).count("output_audio_buffer.started") == 1
