"""Devices in the field: G.711 with zero transcoding, the ESP32 style (ICE-lite offer, PCMA or
16 kHz Opus, data channel `esp_channel` created late), any data-channel label."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCSessionDescription

from relay.client import encode_pcm16_to_opus
from relay.client.ice import host_addresses
from tests.e2e.audio import RATE_HZ, Capture, PcmFrameTrack, bursts, dominant_hz, rms


async def wait_until(predicate, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("codec, fmt", [("pcma", "g711_alaw"), ("pcmu", "g711_ulaw")])
async def test_g711_device_is_relayed_without_transcoding(relay, codec, fmt):
    signal = bursts([(0.4, 0.8, 400.0)], total_s=1.6)
    capture, events = Capture(), []
    device = relay.device()
    answer = await device.connect(audio_source=PcmFrameTrack(signal), codecs=(codec,), on_audio=capture,
                                  on_event=events.append)
    assert "opus" not in answer.lower() and f"{codec.upper()}/8000" in answer
    call = relay.plane.registry.calls()[0]
    # zero transcoding: no Opus encoder or decoder exists for this call; bytes pass through
    assert call.codec.upstream_format == fmt
    assert call.sink.decoder is None and call._encoder._encoder is None
    await wait_until(lambda: "output_audio_buffer.stopped" in [e["type"] for e in events])
    updated = [e for e in events if e["type"] == "session.updated"][-1]["session"]
    assert updated["input_audio_format"] == fmt and updated["output_audio_format"] == fmt
    await device.hangup()
    segments = capture.segments()
    assert len(segments) == 1 and 0.6 <= segments[0][1] <= 1.2
    echo = capture.segment_samples(segments[0])
    assert abs(dominant_hz(echo, capture.rate_hz) - 400) < 10 and rms(echo) > 2500


async def test_g711_refused_when_the_assistant_does_not_allow_it_and_opus_is_offered(relay):
    """A device preferring PCMA but also offering Opus gets Opus when G.711 is not allowed -- here
    allowed (default assistant), so the device's first choice wins."""
    device = relay.device()
    answer = await device.connect(audio_source=PcmFrameTrack(bursts([], total_s=0.2)), codecs=("pcma", "opus"))
    assert "PCMA/8000" in answer and "opus" not in answer.lower()
    await device.hangup()


async def esp32_connect(relay, *, codec: str, signal, capture: Capture):
    """The ESP32 client's flow: ICE-lite offer, no data channel at first, `esp_channel` later."""
    device = relay.device()
    device.receiver = __import__("relay.client", fromlist=["AudioReceiver"]).AudioReceiver(on_audio=capture)
    source = PcmFrameTrack(signal) if codec == "pcma" else encode_pcm16_to_opus(signal, RATE_HZ)
    pc = device.build_peer(audio_source=source, codecs=(codec,), late_datachannel=True,
                           datachannel_label="esp_channel")
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n", 1)
    if codec == "opus":  # ESP32 Opus runs at 16 kHz
        offer = offer.replace("a=rtpmap:96 opus/48000/2\r\n",
                              "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 maxplaybackrate=16000;stereo=0\r\n")
    answer, _ = await device._post("/v1/realtime", offer.encode(), "application/sdp")
    answer_sdp = answer.decode()
    device.receiver.set_payload_types(__import__("relay.client.client", fromlist=["_rtpmap"])._rtpmap(answer_sdp))
    await pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
    await device.wait_connected(datachannel=False)
    return device


@pytest.mark.parametrize("codec", ["pcma", "opus"])
async def test_esp32_ice_lite_offer_and_late_esp_channel(relay, codec):
    signal = bursts([(0.3, 0.7, 500.0)], total_s=4.0)
    capture, events = Capture(), []
    device = await esp32_connect(relay, codec=codec, signal=signal, capture=capture)
    device._on_event = events.append
    call = relay.plane.registry.calls()[0]
    assert call.peer.pc.iceConnectionState in ("completed", "checking", "new") or call.peer.connected
    # audio flows and the echo comes back while no data channel exists yet
    await wait_until(lambda: len(capture.segments()) >= 1)
    assert events == []
    # the device creates its channel late; the events held for it arrive first, in order
    device.open_datachannel("esp_channel")
    await wait_until(lambda: any(e["type"] == "response.done" for e in events))
    types = [e["type"] for e in events]
    assert types[0] == "session.created" and "session.updated" in types
    device.send_text("hello from esp32")
    await wait_until(lambda: sum(t == "response.done" for t in [e["type"] for e in events]) >= 2)
    await device.hangup()
    echo = capture.segment_samples(capture.segments()[0])
    assert abs(dominant_hz(echo, capture.rate_hz) - 500) < 10


@pytest.mark.parametrize("label", ["messages", "oai-events", "anything-goes"])
async def test_any_data_channel_label(relay, label):
    events = []
    device = relay.device()
    await device.connect(audio_source=encode_pcm16_to_opus(bursts([], total_s=0.2), RATE_HZ),
                         datachannel_label=label, on_event=events.append)
    device.send_text("hi")
    await wait_until(lambda: any(e["type"] == "response.done" for e in events))
    await device.hangup()


async def test_public_ip_advertisement_keeps_calls_working(relay_factory):
    relay = await relay_factory(ice_public_ip="127.0.0.1")  # a 1:1 "NAT" onto the same address
    events = []
    device = relay.device()
    answer = await device.connect(on_event=events.append)
    assert "127.0.0.1" in answer
    device.send_text("hi")
    await wait_until(lambda: any(e["type"] == "response.done" for e in events))
    await device.hangup()
    await relay.wait_idle()


async def test_bad_public_ip_is_a_settings_error():
    from relay.settings import SettingsError, load_settings
    from relay.web.app import create_app

    with pytest.raises(SettingsError):
        create_app(load_settings(environ={}, ice_public_ip="nat.example"))


async def test_fixed_udp_port_range(relay_factory):
    import socket

    from tests.conftest import free_port

    base = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(ice_mux=False, ice_port_min=base, ice_port_max=base)
    events = []
    device = relay.device()
    answer = await device.connect(on_event=events.append)
    ports = {int(line.split()[5]) for line in answer.splitlines() if line.startswith("a=candidate:")}
    assert ports == {base}
    device.send_text("hi")
    await wait_until(lambda: any(e["type"] == "response.done" for e in events))
    # the only port is taken: a second call is refused with 503, cleanly
    second = relay.device()
    with pytest.raises(Exception) as info:
        await second.connect()
    assert getattr(info.value, "status", None) == 503
    assert len(relay.plane.registry) == 1
    await device.hangup()
    await relay.wait_idle()


async def test_one_udp_port_per_worker(relay_factory):
    import socket

    from relay.settings import SettingsError
    from tests.conftest import free_port

    base = free_port(socket.SOCK_DGRAM)
    relay = await relay_factory(ice_mux=True, ice_udp_port=base)
    devices, events = [relay.device(), relay.device()], [[], []]
    answers = [await d.connect(on_event=e.append) for d, e in zip(devices, events, strict=True)]
    ports = {int(line.split()[5]) for a in answers for line in a.splitlines() if line.startswith("a=candidate:")}
    assert ports == {base}
    for device in devices:
        device.send_text("hi")
    await wait_until(lambda: all(any(e["type"] == "response.done" for e in evs) for evs in events))
    for device in devices:
        await device.hangup()
    await relay.wait_idle()
    # a second worker configured onto the same port does not start
    with pytest.raises(SettingsError, match=f"ice_udp_port {base}"):
        await relay_factory(ice_mux=True, ice_udp_port=base)
    with pytest.raises(SettingsError, match="ice_mux"):
        await relay_factory(ice_mux=True, ice_port_min=base, ice_port_max=base)


async def test_device_that_vanishes_is_detected_by_consent_loss(relay, monkeypatch):
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)  # RFC 7675 checks, sped up for the test
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 2)
    device = relay.device()
    await device.connect()
    call = relay.plane.registry.calls()[0]
    # the device drops off the network: its UDP sockets go away, no DTLS close, no SCTP abort
    for transceiver in device.pc.getTransceivers():
        for protocol in transceiver.sender.transport.transport.iceGatherer._connection._protocols:
            protocol.transport.close()
    await asyncio.wait_for(call.wait_closed(), 20)
    assert call.end_reason in ("ice_failed", "device_closed", "datachannel_closed")
    await device.hangup()


async def test_events_larger_than_the_device_accepts_are_dropped_not_fatal(relay):
    """An ESP32 accepts data-channel messages up to 16 KiB (SDP max-message-size). A reply echoing a
    20 KB text cannot be delivered whole: those events are dropped with an error event, the call goes on."""
    events: list[dict] = []
    device = relay.device()
    device._on_event = events.append
    pc = device.build_peer(audio_source=None)
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp.replace("a=max-message-size:262144", "a=max-message-size:16384")
    assert "a=max-message-size:16384" in offer
    answer, _ = await device._post("/v1/realtime", offer.encode(), "application/sdp")
    await pc.setRemoteDescription(RTCSessionDescription(answer.decode(), "answer"))
    await device.wait_connected()
    def ask_text_only(text: str) -> None:
        device.send_event({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
        device.send_event({"type": "response.create", "response": {"modalities": ["text"]}})

    try:
        ask_text_only("x" * 20_000)
        await wait_until(lambda: any(e["type"] == "error" and e["error"]["code"] == "event_too_large"
                                     for e in events))
        ask_text_only("short")
        await wait_until(lambda: any(e["type"] == "response.text.done" and "short" in e.get("text", "")
                                     for e in events))
        assert relay.plane.metrics.dc_events_dropped >= 1
        assert relay.plane.registry.calls()[0].end_reason is None
    finally:
        await device.hangup()
