"""A real call end to end: aiortc device -> POST /v1/realtime -> relay -> local assistant (echo) -> back.

The assistant's echo mode speaks each utterance back, so the tone the device sends
must come back: same frequency, similar length, real energy -- and the events
arrive on the data channel in the device's (beta) dialect, without audio deltas.
"""

from __future__ import annotations

import asyncio

from relay.client import encode_pcm16_to_opus
from tests.e2e.audio import RATE_HZ, Capture, bursts, dominant_hz, rms
from tests.e2e.conftest import both_ice_modes


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)


@both_ice_modes
async def test_speech_is_heard_back_with_events_in_beta(relay):
    signal = bursts([(0.4, 0.8, 440.0)], total_s=1.6)
    capture, events = Capture(), []
    device = relay.device()
    answer = await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_audio=capture,
                                  on_event=events.append)
    assert "opus/48000/2" in answer and "127.0.0.1" in answer
    assert "a=setup:active" in answer and "a=fingerprint:sha-256" in answer
    types = lambda: [e["type"] for e in events]  # noqa: E731
    await wait_until(lambda: "output_audio_buffer.stopped" in types())
    await device.hangup()

    segments = capture.segments()
    assert len(segments) == 1, segments
    echo = capture.segment_samples(segments[0])
    assert 0.6 <= segments[0][1] <= 1.2  # the 0.8 s utterance, spoken back
    assert abs(dominant_hz(echo, capture.rate_hz) - 440.0) < 10
    assert rms(echo) > 3000
    # no audio inside the echo drops out (no gaps or clicks mid-response)
    window = capture.rate_hz // 50
    inner = echo[window * 3:-window * 3]
    assert min(rms(inner[i:i + window]) for i in range(0, len(inner) - window, window)) > 2000

    seen = types()
    for expected in ("session.created", "input_audio_buffer.speech_started", "input_audio_buffer.committed",
                     "conversation.item.input_audio_transcription.completed", "response.created",
                     "response.audio_transcript.delta", "output_audio_buffer.started", "response.done",
                     "output_audio_buffer.stopped"):
        assert expected in seen, expected
    assert not any(t.endswith(".delta") and "audio." in t and "transcript" not in t for t in seen)
    assert not any(t.startswith("response.output_audio") for t in seen)  # GA names never reach a beta device
    assert seen.index("output_audio_buffer.started") < seen.index("output_audio_buffer.stopped")


async def test_many_utterances_in_one_call_and_clean_hangup(relay):
    signal = bursts([(0.3, 0.5, 330.0), (2.3, 0.5, 660.0)], total_s=3.6)
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_audio=capture,
                         on_event=events.append)
    await wait_until(lambda: [e["type"] for e in events].count("output_audio_buffer.stopped") >= 2, 20)
    call = relay.plane.registry.calls()[0]
    await device.hangup()
    await call.wait_closed()
    assert call.end_reason in ("datachannel_closed", "device_closed")
    heard = [dominant_hz(capture.segment_samples(s), capture.rate_hz) for s in capture.segments()]
    assert len(heard) == 2 and abs(heard[0] - 330) < 10 and abs(heard[1] - 660) < 10
    assert call.usage.input_audio_s > 3 and call.usage.output_audio_s > 0.8
    assert relay.plane.metrics.rtp_in_bad == 0 and relay.plane.metrics.rtp_in_lost == 0


async def test_relay_side_runs_no_decoder_thread_and_keeps_no_rtp_history(relay):
    import threading

    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(bursts([], total_s=0.5), RATE_HZ))
    call = relay.plane.registry.calls()[0]
    receiver = call.peer.pc.getTransceivers()[0].receiver
    await wait_until(lambda: relay.plane.metrics.rtp_in_packets > 10)
    assert receiver._RTCRtpReceiver__decoder_thread is None
    # audio is never retransmitted: the sender keeps no RTP history
    await wait_until(lambda: relay.plane.metrics.frames_out > 10)
    assert len(call.peer.pc.getTransceivers()[0].sender._RTCRtpSender__rtp_history) == 0
    assert sum(t.name == "audio-decoder" for t in threading.enumerate()) <= 1  # the device's own
    await device.hangup()


async def test_dtx_sends_almost_nothing_while_idle_and_audio_still_flows(relay_factory):
    relay = await relay_factory(downlink_dtx=True)
    signal = bursts([(0.3, 0.6, 440.0)], total_s=1.2)
    capture, events = Capture(), []
    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(signal, RATE_HZ), on_audio=capture,
                         on_event=events.append)
    await wait_until(lambda: "output_audio_buffer.stopped" in [e["type"] for e in events])
    await asyncio.sleep(0.3)
    packets = device.receiver.stats.packets
    await asyncio.sleep(2.0)  # idle: ~100 ticks, of which DTX sends one in 20
    idle_packets = device.receiver.stats.packets - packets
    await device.hangup()
    assert idle_packets <= 10
    assert relay.plane.metrics.frames_out_dtx > 80
    echo = capture.segment_samples(capture.segments()[0])
    assert abs(dominant_hz(echo, capture.rate_hz) - 440.0) < 10 and rms(echo) > 3000
    await relay.wait_idle()


@both_ice_modes
async def test_concurrent_calls_each_hear_only_their_own_echo(relay):
    freqs = [350.0, 500.0, 650.0, 800.0]
    devices, captures, events, answers = [], [], [], []
    for hz in freqs:
        capture, evs = Capture(), []
        device = relay.device()
        answers.append(await device.connect(
            audio_source=encode_pcm16_to_opus(bursts([(0.3, 0.6, hz)], total_s=1.5), RATE_HZ),
            on_audio=capture, on_event=evs.append))
        devices.append(device)
        captures.append(capture)
        events.append(evs)
    ports = {line.split()[5] for answer in answers for line in answer.splitlines() if " typ host" in line}
    mux = relay.plane.mux
    if mux is not None:  # every call's host candidate is the worker's one port
        assert ports == {str(mux.port)} and mux.stats()["routes"] == len(freqs)
    else:
        assert len(ports) == len(freqs)
    # a misbehaving fifth device floods garbage meanwhile
    noisy = relay.device()
    await noisy.connect()
    for _ in range(300):
        noisy.channel.send("{garbage")
    await wait_until(lambda: all("output_audio_buffer.stopped" in [e["type"] for e in evs] for evs in events), 30)
    for device in [*devices, noisy]:
        await device.hangup()
    for hz, capture in zip(freqs, captures, strict=True):
        segments = capture.segments()
        assert len(segments) == 1, (hz, segments)
        heard = capture.segment_samples(segments[0])
        assert abs(dominant_hz(heard, capture.rate_hz) - hz) < 10 and rms(heard) > 3000
