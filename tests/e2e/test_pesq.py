"""Speech quality through relay, both directions, against the codec's own ceiling (wideband PESQ,
ITU-T P.862.2): real calls -- relay on 127.0.0.1, a device from relay's SDK (a real aiortc peer),
a scripted Realtime upstream on a real WebSocket -- on a fixed espeak-ng clip (``bench.fidelity``).

- downlink: the upstream's audio delta -> what the device decodes, vs the same clip through one
  libopus encoder at relay's downlink settings, decoded the same way;
- uplink: what the device sent -> what the upstream receives (relay decodes straight to 24 kHz),
  vs the same packets through a fresh libopus decoder;
- the Opus ``a=fmtp`` relay answers with, and in-band FEC on the downlink when the device asks.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiortc import RTCSessionDescription

from bench import fidelity as fi
from relay.client import AudioReceiver
from relay.client.client import _rtpmap
from relay.client.ice import host_addresses
from relay.media.opus import OpusDecoder
from tests.e2e.audio import Capture
from tests.e2e.fidelity import wait_for
from tests.e2e.realtime_stub import RealtimeStub

PESQ_MARGIN = 0.1


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return fi.speech_clip()


@pytest.fixture
async def stub() -> AsyncIterator[RealtimeStub]:
    s = await RealtimeStub().start()
    yield s
    await s.close()


async def relay_for(relay_factory, stub):
    return await relay_factory(upstream_url=stub.url, upstream_provider="compatible", upstream_model="stub")


def stopped(events) -> bool:
    return any(e.get("type") == "output_audio_buffer.stopped" for e in events)


async def test_downlink_speech_pesq_matches_the_codec_ceiling(relay_factory, stub, clip):
    relay = await relay_for(relay_factory, stub)
    capture, events = Capture(), []
    device = relay.device()
    try:
        answer = await device.connect(on_audio=capture, on_event=events.append)
        await asyncio.wait_for(stub.connected.wait(), 10)
        mark = len(capture.samples)  # what the device decoded before the response: not part of it
        await stub.respond(clip.tobytes(), deltas=len(clip) // 2400)  # 100 ms deltas, sent at once
        await wait_for(lambda: stopped(events), 20)
        await asyncio.sleep(0.2)
    finally:
        await device.hangup()
    await relay.wait_idle()
    through_relay = fi.pesq_wb(clip, fi.RATE_HZ, capture.samples[mark:], capture.rate_hz)
    ceiling = fi.pesq_wb(clip, fi.RATE_HZ, fi.downlink_ceiling(clip, decode_rate_hz=capture.rate_hz), capture.rate_hz)
    print(f"\ndownlink PESQ-WB: relay {through_relay:.2f}, codec ceiling {ceiling:.2f}")
    assert "a=fmtp" in answer
    assert through_relay >= ceiling - PESQ_MARGIN


async def test_uplink_speech_pesq_matches_the_codec_ceiling(relay_factory, stub, clip):
    relay = await relay_for(relay_factory, stub)
    packets = fi.device_packets(clip, fec=False)
    device = relay.device()
    try:
        await device.connect(audio_source=packets)
        await asyncio.wait_for(stub.connected.wait(), 10)
        await wait_for(lambda: len(stub.uplink) >= 2 * (len(clip) + fi.RATE_HZ // 2), 20)
    finally:
        await device.hangup()
    await relay.wait_idle()
    received = np.frombuffer(stub.uplink_pcm16, "<i2")
    through_relay = fi.pesq_wb(clip, fi.RATE_HZ, received, fi.RATE_HZ)
    ceiling = fi.pesq_wb(clip, fi.RATE_HZ, fi.uplink_ceiling(packets, set()), fi.RATE_HZ)
    print(f"\nuplink PESQ-WB: relay {through_relay:.2f}, codec ceiling {ceiling:.2f}")
    assert through_relay >= ceiling - PESQ_MARGIN


async def connect_with_offer_fmtp(device, fmtp: str, capture: Capture, payloads: list[bytes]):
    """Connect ``device`` with ``fmtp`` added to its Opus offer (a browser's ``useinbandfec=1``),
    recording every payload relay sends it; returns the answer SDP."""
    device.receiver = AudioReceiver(on_audio=capture)
    handle = device.receiver.handle_packet

    def record(seq, payload_type, payload, arrival_s, rtp_ts=None):
        payloads.append(payload)
        handle(seq, payload_type, payload, arrival_s, rtp_ts)

    device.receiver.handle_packet = record
    pc = device.build_peer(codecs=("opus",))
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    offer = re.sub(r"(a=rtpmap:(\d+) opus/48000/2\r\n)", lambda m: f"{m.group(1)}a=fmtp:{m.group(2)} {fmtp}\r\n",
                   pc.localDescription.sdp, count=1)
    answer, _ = await device._post("/v1/realtime", offer.encode(), "application/sdp")
    answer_sdp = answer.decode()
    device.receiver.set_payload_types(_rtpmap(answer_sdp))
    await pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
    await device.wait_connected()
    return answer_sdp


def decode_with_loss(payloads: list[bytes], lost: set[int], *, fec: bool) -> np.ndarray:
    """What a device decodes (48 kHz) when ``lost`` packets never arrive: each recovered from the next
    packet's in-band FEC (``fec``) or concealed."""
    dec = OpusDecoder(48000)
    out = []
    for i, p in enumerate(payloads):
        if i not in lost:
            out.append(dec.decode(p))
        elif fec and i + 1 < len(payloads) and i + 1 not in lost:
            out.append(dec.decode_fec(payloads[i + 1], 20))
        else:
            out.append(dec.conceal(20))
    return np.frombuffer(b"".join(out), "<i2")


async def test_answer_fmtp_and_downlink_in_band_fec_when_the_device_asks(relay_factory, stub, clip):
    """relay answers with the Opus fmtp a voice relay wants (in-band FEC, mono, 20 ms, 32 kb/s), and
    a device that offered ``useinbandfec=1`` gets packets carrying FEC: under 15 % seeded loss it
    recovers the lost frames from them and decodes the speech better than by concealment alone."""
    relay = await relay_for(relay_factory, stub)
    capture, events, payloads = Capture(), [], []
    device = relay.device()
    device._on_event = events.append
    try:
        answer = await connect_with_offer_fmtp(device, "minptime=10;useinbandfec=1", capture, payloads)
        await asyncio.wait_for(stub.connected.wait(), 10)
        start = len(payloads)
        await stub.respond(clip.tobytes(), deltas=len(clip) // 2400)
        await wait_for(lambda: stopped(events), 20)
        await asyncio.sleep(0.2)
    finally:
        await device.hangup()
    await relay.wait_idle()
    fmtp = re.search(r"a=fmtp:\d+ (.*)\r\n", answer).group(1).split(";")
    assert {"useinbandfec=1", "stereo=0", "sprop-stereo=0", "maxaveragebitrate=32000"} <= set(fmtp)
    assert "a=ptime:20" in answer
    speech = payloads[start:]
    lost = fi.lost_packets(len(speech), "15% random")
    with_fec = fi.pesq_wb(clip, fi.RATE_HZ, decode_with_loss(speech, lost, fec=True), 48000)
    concealed = fi.pesq_wb(clip, fi.RATE_HZ, decode_with_loss(speech, lost, fec=False), 48000)
    print(f"\ndownlink under 15 % loss, PESQ-WB: FEC {with_fec:.2f}, concealment only {concealed:.2f}")
    assert with_fec > concealed + 0.2
