"""Backlog trimming (relay.bridge.trim): a real-time stream's standing delay goes, no speech is lost."""

from __future__ import annotations

import base64

from bridge_helpers import Harness, make_assistant, upstream_events

from relay.bridge import CallCore
from relay.bridge.trim import BacklogTrimmer

FRAME = 960  # 20 ms of pcm16 at 24 kHz
QUIET = 0


def new_harness(**kw) -> Harness:
    core = CallCore(make_assistant(), now=0.0, **kw)
    h = Harness(core)
    core.on_upstream_opened(0.0)
    h.drain()
    h.start_response("r1", "i1")
    return h


def frame_of(value: int) -> bytes:
    return int(value).to_bytes(2, "little", signed=True) * (FRAME // 2)


def push(h: Harness, frames: list[bytes], item: str = "i1") -> None:
    h.up({"type": "response.audio.delta", "response_id": "r1", "item_id": item, "output_index": 0,
          "content_index": 0, "delta": base64.b64encode(b"".join(frames)).decode()})


def speech_with_pauses(n: int, start: int = 0) -> list[bytes]:
    """Frame k is loud (a distinct value) in 200 ms runs, separated by 200 ms of digital silence."""
    return [frame_of(1000 + k) if (k // 10) % 2 == 0 else frame_of(QUIET) for k in range(start, start + n)]


def loud_values(frames: list[bytes | None]) -> list[int]:
    return [int.from_bytes(f[:2], "little", signed=True) for f in frames if f is not None and f != frame_of(QUIET)]


def test_a_real_time_stream_loses_its_standing_delay_and_no_speech() -> None:
    h = new_harness(trim_above_ms=40)
    sent = speech_with_pauses(15)  # a 300 ms stall's worth of audio arrives at once...
    push(h, sent)
    out: list[bytes | None] = []
    for k in range(15, 15 + 250):  # ...then 5 s streamed at real time, one frame per tick
        frame = speech_with_pauses(1, start=k)
        sent += frame
        push(h, frame)
        out += h.tick(1)
    # the delay left is what was asked (a frame of slack), not the 300 ms the stall left
    assert h.core.buffered_ms <= 40 + 20
    assert h.core.trimmed_frames == (300 - 40) // 20 - 1 or h.core.trimmed_frames == (300 - 40) // 20
    # every loud frame played, in order; only silence was skipped
    played_loud = loud_values(out)
    assert played_loud == loud_values(sent)[:len(played_loud)]
    still_buffered = h.core.buffered_ms // 20
    assert len(played_loud) >= len(loud_values(sent)) - still_buffered
    assert len([f for f in out if f is not None]) + h.core.trimmed_frames + still_buffered == len(sent)


def test_a_response_delivered_faster_than_real_time_is_never_trimmed() -> None:
    h = new_harness(trim_above_ms=40)
    sent = speech_with_pauses(250)  # 5 s of audio with pauses, delivered in one burst (a real model)
    push(h, sent)
    out = h.tick(250)
    assert h.core.trimmed_frames == 0
    assert out == sent


def test_a_jittery_stream_without_standing_delay_is_not_trimmed() -> None:
    h = new_harness(trim_above_ms=40)
    out: list[bytes | None] = []
    sent: list[bytes] = []
    for k in range(0, 300, 2):  # 40 ms chunks every 40 ms: the buffer swings 0..40 ms
        chunk = speech_with_pauses(2, start=k)
        sent += chunk
        push(h, chunk)
        out += h.tick(2)
    assert h.core.trimmed_frames == 0
    assert out == sent


def test_a_stream_with_no_pauses_keeps_its_delay_rather_than_lose_speech() -> None:
    h = new_harness(trim_above_ms=40)
    sent = [frame_of(2000 + k) for k in range(15)]
    push(h, sent)
    out: list[bytes | None] = []
    for k in range(15, 265):
        frame = [frame_of(2000 + k)]
        sent += frame
        push(h, frame)
        out += h.tick(1)
    assert h.core.trimmed_frames == 0
    assert out == sent[:250]
    assert h.core.buffered_ms == 300


def test_skipped_frames_count_as_played_in_the_truncate() -> None:
    h = new_harness(trim_above_ms=40)
    push(h, speech_with_pauses(15))
    for k in range(15, 15 + 150):
        push(h, speech_with_pauses(1, start=k))
        h.tick(1)
    skipped = h.core.trimmed_frames
    assert skipped > 0
    out = h.up({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u1"})
    [trunc] = [e for e in upstream_events(out) if e["type"] == "conversation.item.truncate"]
    assert trunc["audio_end_ms"] == (150 + skipped) * 20  # the position in the item, pauses skipped included


def test_off_for_g711_websocket_clients_and_when_disabled() -> None:
    for kw in ({"trim_above_ms": 0}, {"audio_over_events": True}):
        h = new_harness(**kw)
        push(h, speech_with_pauses(15))
        for k in range(15, 165):
            push(h, speech_with_pauses(1, start=k))
            h.tick(1)
        assert h.core.trimmed_frames == 0, kw
    core = CallCore(make_assistant(), now=0.0, audio_format="g711_ulaw", trim_above_ms=40)
    assert core.trimmed_frames == 0 and core._trim is None


def test_trimmer_budget_is_the_excess_over_the_window_minimum() -> None:
    t = BacklogTrimmer(above_ms=40, window_ms=200)
    for level in (130, 120, 140, 125, 150, 135, 128, 131, 122, 139):  # 10 ticks = 200 ms
        t.received(20)
        t.observe(level)
    assert t.budget_ms == 120 - 40
    assert not t.may_skip(frame_of(500))  # audible: never skipped
    assert t.may_skip(frame_of(10)) and t.budget_ms == 60
    t.unskip()
    assert t.budget_ms == 80 and t.skipped_frames == 0
    t.idle()
    assert t.budget_ms == 0
