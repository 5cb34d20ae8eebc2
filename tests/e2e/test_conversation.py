"""Conversation semantics through the whole stack: upstream dialects, upstream failure and end,
maximum call length, client-side tools, barge-in at random points (clamped truncates, never a
silent call)."""

from __future__ import annotations

import asyncio
import random

import pytest

from relay.assistant import start_local_assistant
from relay.client import encode_pcm16_to_opus
from tests.e2e.audio import RATE_HZ, Capture, LiveTrack, bursts, dominant_hz, tone


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.02)


def types(events):
    return [e["type"] for e in events]


@pytest.fixture
async def external_assistant():
    """A second local assistant, reached like a third-party provider (``upstream_url``)."""
    runner, url = await start_local_assistant("127.0.0.1", 0)
    yield url
    await runner.cleanup()


async def test_ga_upstream_beta_device_then_ga_device(relay_factory):
    relay = await relay_factory(upstream_dialect="ga")
    signal = bursts([(0.3, 0.6, 520.0)], total_s=1.5)
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_audio=capture,
                         on_event=events.append)
    try:
        await wait_until(lambda: "output_audio_buffer.stopped" in types(events))
        assert relay.plane.registry.calls()[0].core.upstream_dialect == "ga"
        seen = types(events)
        assert "response.audio_transcript.delta" in seen  # beta names for a beta device
        assert not any(t.startswith("response.output_audio") for t in seen)
        # the device switches to GA by speaking GA; it then hears GA names
        device.send_event({"type": "session.update", "session": {"type": "realtime"}})
        device.send_event({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}})
        device.send_event({"type": "response.create", "response": {"output_modalities": ["audio"]}})
        await wait_until(lambda: "response.output_audio_transcript.delta" in types(events))
    finally:
        await device.hangup()
    echo = capture.segment_samples(capture.segments()[0])
    assert abs(dominant_hz(echo, capture.rate_hz) - 520) < 10
    await relay.wait_idle()


async def test_loopback_model_on_a_third_party_style_upstream(relay_factory, external_assistant):
    relay = await relay_factory(upstream_url=external_assistant, upstream_provider="compatible",
                                upstream_model="relay-loopback")
    signal = bursts([(0.2, 0.5, 700.0)], total_s=1.2)
    capture = Capture()
    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_audio=capture)
    await wait_until(lambda: len(capture.segments()) >= 1 and capture.seconds > 1.5)
    await device.hangup()
    echo = capture.segment_samples(capture.segments()[0])
    assert abs(dominant_hz(echo, capture.rate_hz) - 700) < 10
    await relay.wait_idle()


async def test_upstream_failure_gives_an_error_event_and_ends_the_call(relay_factory, external_assistant):
    relay = await relay_factory(upstream_url=external_assistant, upstream_provider="compatible",
                                upstream_model="relay-fail")
    events = []
    device = relay.device()
    await device.connect(on_event=events.append)
    call = relay.plane.registry.calls()[0]
    await asyncio.wait_for(call.wait_closed(), 10)
    await wait_until(lambda: "error" in types(events), 5)
    err = [e for e in events if e["type"] == "error"][0]["error"]
    assert err["code"] in ("upstream_closed", "upstream_unavailable") and err["message"]
    assert call.end_reason == "upstream_closed"
    await device.hangup()
    await relay.wait_idle()


async def test_unreachable_upstream_gives_an_error_event(relay_factory):
    relay = await relay_factory(upstream_url="ws://127.0.0.1:9/v1/realtime", upstream_provider="compatible",
                                upstream_connect_timeout_s=2.0)
    events = []
    device = relay.device()
    await device.connect(on_event=events.append)
    call = relay.plane.registry.calls()[0]
    await asyncio.wait_for(call.wait_closed(), 10)
    await wait_until(lambda: "error" in types(events), 5)
    assert [e for e in events if e["type"] == "error"][0]["error"]["code"] == "upstream_unavailable"
    assert call.end_reason == "upstream_unavailable"
    await device.hangup()
    await relay.wait_idle()


async def test_upstream_closing_mid_call_ends_it_cleanly(relay):
    events = []
    device = relay.device()
    await device.connect(on_event=events.append)
    call = relay.plane.registry.calls()[0]
    device.send_text("disconnect")
    await asyncio.wait_for(call.wait_closed(), 10)
    await wait_until(lambda: "error" in types(events), 5)
    assert [e for e in events if e["type"] == "error"][-1]["error"]["code"] == "upstream_closed"
    assert call.end_reason == "upstream_closed"
    await device.hangup()


async def test_demo_calls_are_capped(relay_factory):
    relay = await relay_factory(demo_max_call_s=1)
    events = []
    device = relay.device()
    await device.connect(on_event=events.append)
    call = relay.plane.registry.calls()[0]
    await asyncio.wait_for(call.wait_closed(), 10)
    assert call.end_reason == "max_call_length"
    assert [e for e in events if e["type"] == "error"][-1]["error"]["code"] == "max_call_length"
    await device.hangup()
    await relay.wait_idle()


async def test_client_side_tool_round_trip(relay):
    events, calls = [], []

    def set_volume(args):
        calls.append(args)
        return {"volume": args.get("volume_level")}

    device = relay.device()
    await device.connect(on_event=events.append, tools={"set_device_volume": set_volume})
    device.send_text('call set_device_volume {"volume_level": 30}')
    await wait_until(lambda: calls and types(events).count("response.done") >= 2)
    await device.hangup()
    fc = [e for e in events if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"]
    assert fc and fc[0]["item"]["name"] == "set_device_volume" and calls == [{"volume_level": 30}]


async def barge_in_call(relay, *, first_s: float, delay_after_start_s: float | None, when: str = "playing"):
    """Speak ``first_s`` of 440 Hz; interrupt with 880 Hz at a chosen point; return what happened."""
    track = LiveTrack()
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(audio_source=track, on_audio=capture, on_event=events.append)
    call = relay.plane.registry.calls()[0]
    track.play(tone(first_s, 440.0))
    if when == "playing":
        await wait_until(lambda: "output_audio_buffer.started" in types(events))
        await asyncio.sleep(delay_after_start_s)
    else:  # before the first audio of the reply: right when the utterance is committed
        await wait_until(lambda: "input_audio_buffer.committed" in types(events))
    heard_before_s = capture.seconds
    track.play(tone(0.6, 880.0))
    await wait_until(lambda: any(abs(dominant_hz(capture.segment_samples(s), capture.rate_hz) - 880) < 15
                                 for s in capture.segments() if s[1] > 0.3), 20)
    truncates = list(call.core.truncates)
    await device.hangup()
    await call.wait_closed()
    return capture, events, truncates, heard_before_s


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_barge_in_at_random_points_truncates_clamped_and_never_silent(relay, seed):
    delay_s = random.Random(seed).uniform(0.15, 1.2)
    capture, events, truncates, _ = await barge_in_call(relay, first_s=1.6, delay_after_start_s=delay_s)
    seen = types(events)
    assert "output_audio_buffer.cleared" in seen
    segments = capture.segments()
    first = capture.segment_samples(segments[0])
    heard_first_ms = segments[0][1] * 1000
    assert abs(dominant_hz(first, capture.rate_hz) - 440) < 10
    assert heard_first_ms < 1600 - 100  # the first reply was cut short
    # exactly one truncate for the interrupted item, clamped to what was played and received
    assert len(truncates) == 1
    _, audio_end_ms = truncates[0]
    assert 0 < audio_end_ms <= 1600 + 400  # never beyond what the upstream sent (utterance + padding)
    assert abs(audio_end_ms - heard_first_ms) <= 200  # what the device actually heard
    # never a silent call: the interruption itself is answered
    assert any(abs(dominant_hz(capture.segment_samples(s), capture.rate_hz) - 880) < 15 for s in segments[1:])


async def test_barge_in_before_first_audio_sends_no_truncate(relay):
    capture, events, truncates, heard_before_s = await barge_in_call(relay, first_s=0.6, delay_after_start_s=None,
                                                                     when="before_audio")
    assert truncates == [] or all(ms > 0 for _, ms in truncates)
    segments = capture.segments()
    assert any(abs(dominant_hz(capture.segment_samples(s), capture.rate_hz) - 880) < 15 for s in segments)


async def test_barge_in_during_a_client_tool_call(relay):
    track = LiveTrack()
    capture, events, pending = Capture(), [], asyncio.Event()

    async def slow_tool(args):
        await pending.wait()
        return {"muted": True}

    device = relay.device()
    await device.connect(audio_source=track, on_audio=capture, on_event=events.append,
                         tools={"quiet_device": slow_tool})
    device.send_text("call quiet_device {}")
    await wait_until(lambda: any(e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
                                 for e in events))
    track.play(tone(0.6, 600.0))  # the user talks while the tool runs
    await wait_until(lambda: any(abs(dominant_hz(capture.segment_samples(s), capture.rate_hz) - 600) < 15
                                 for s in capture.segments() if s[1] > 0.3), 20)
    pending.set()  # the tool answers late; the call carries on
    done_before = types(events).count("response.done")
    await wait_until(lambda: types(events).count("response.done") > done_before, 10)
    assert not [e for e in events if e["type"] == "error"]
    await device.hangup()


async def test_graceful_drain_on_shutdown_ends_live_calls(relay_factory):
    relay = await relay_factory(shutdown_timeout_s=0.3)
    events = []
    device = relay.device()
    await device.connect(on_event=events.append)
    call = relay.plane.registry.calls()[0]
    await relay.server.close()  # app shutdown: stop accepting, wait shutdown_timeout_s, end the rest
    assert call.closed and call.end_reason == "server_shutdown"
    assert len(relay.plane.registry) == 0 and relay.plane.clock.listener_count == 0
    await wait_until(lambda: "error" in types(events), 5)
    assert [e for e in events if e["type"] == "error"][-1]["error"]["code"] == "server_shutdown"
    await device.hangup()


async def test_upstream_recycle_is_invisible_to_the_device(relay_factory):
    relay = await relay_factory(upstream_recycle_s=2)
    track = LiveTrack()
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(audio_source=track, on_audio=capture, on_event=events.append)
    call = relay.plane.registry.calls()[0]
    first_upstream = call.upstream
    track.play(tone(0.5, 440.0))
    await wait_until(lambda: "output_audio_buffer.stopped" in types(events))
    await wait_until(lambda: call.upstream is not first_upstream, 10)  # recycled after 2 s
    track.play(tone(0.5, 660.0))
    await wait_until(lambda: types(events).count("output_audio_buffer.stopped") >= 2, 15)
    await device.hangup()
    await call.wait_closed()
    heard = [dominant_hz(capture.segment_samples(s), capture.rate_hz) for s in capture.segments()]
    assert len(heard) == 2 and abs(heard[0] - 440) < 10 and abs(heard[1] - 660) < 10
    assert "error" not in types(events)
    assert types(events).count("session.created") == 1  # the new upstream session stays hidden
    await relay.wait_idle()
