"""The direct downlink send path: packets identical to aiortc's, sent from the tick, RTCP still right."""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc import clock as aiortc_clock
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import RtpStream
from relay.media.clock import MediaClock
from relay.media.metrics import MediaMetrics
from relay.media.rtp_out import make_stream, ntp_time
from tests.media.test_peer import Loopback, connect_device, dominant_hz, wait_for

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def ext_map(mid_id: int | None, abs_id: int | None, level_id: int | None = None) -> HeaderExtensionsMap:
    exts = [RTCRtpHeaderExtensionParameters(id=i, uri=u)
            for i, u in ((mid_id, MID), (abs_id, ABS), (level_id, LEVEL)) if i is not None]
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=exts))
    return m


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(st.integers(1, 255), min_size=3, max_size=3, unique=True),
    use_mid=st.booleans(), use_abs=st.booleans(), use_level=st.booleans(),
    mid=st.text(min_size=1, max_size=20),
    payload_type=st.integers(0, 127), ssrc=st.integers(0, 2**32 - 1), seq=st.integers(0, 65535),
    packets=st.lists(st.tuples(st.binary(min_size=1, max_size=200), st.integers(0, 2**32 - 1),
                               st.integers(0, 2**24 - 1)), min_size=1, max_size=4),
)
def test_packets_are_byte_identical_to_aiortcs_serialization(ids, use_mid, use_abs, use_level, mid, payload_type,
                                                             ssrc, seq, packets):
    mid_id, abs_id, level_id = ids
    if len(mid.encode()) > 255:
        return
    m = ext_map(mid_id if use_mid else None, abs_id if use_abs else None, level_id if use_level else None)
    stream = make_stream(m, mid, payload_type=payload_type, ssrc=ssrc, sequence_number=seq)
    for i, (payload, ts, abs_send_time) in enumerate(packets):
        ours = stream.build(payload, ts, abs_send_time << 14)  # abs-send-time: NTP bits 14..37
        # what aiortc's RTCRtpSender._run_rtp builds for a pre-encoded packet
        packet = RtpPacket(payload_type=payload_type, sequence_number=(seq + i) & 0xFFFF, timestamp=ts)
        packet.ssrc, packet.payload, packet.marker = ssrc, payload, 1
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.mid = mid
        assert ours == packet.serialize(m)
        parsed = RtpPacket.parse(ours, m)
        assert (parsed.sequence_number, parsed.timestamp, parsed.marker, parsed.ssrc, parsed.payload) == \
            ((seq + i) & 0xFFFF, ts, 1, ssrc, payload)
        assert parsed.extensions.mid == (mid if use_mid else None)
        assert parsed.extensions.abs_send_time == (abs_send_time if use_abs else None)


def test_sequence_numbers_wrap_and_the_stream_rejects_bad_payload_types():
    w = RtpStream(payload_type=111, ssrc=1, sequence_number=65535)
    assert RtpPacket.parse(w.build(b"x", 5)).sequence_number == 65535
    assert RtpPacket.parse(w.build(b"x", 5)).sequence_number == 0
    with pytest.raises(ValueError):
        RtpStream(payload_type=128, ssrc=1, sequence_number=0)


def test_ntp_time_matches_aiortcs_clock():
    before = aiortc_clock.current_ntp_time()
    ours = ntp_time(time.time())
    after = aiortc_clock.current_ntp_time()
    assert before - (1 << 22) <= ours <= after + (1 << 22)  # within ~1 ms


async def test_a_real_device_hears_the_direct_path_with_right_headers_stats_and_sender_reports():
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    device, _, received = await connect_device(label="messages", tone_hz=660.0)
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    packets: list[RtpPacket] = []
    device_receiver = device.getTransceivers()[0].receiver
    original = device_receiver._handle_rtp_packet

    async def record(packet, arrival_time_ms):  # the device's aiortc parsed it with RtpPacket.parse
        packets.append(packet)
        await original(packet, arrival_time_ms)

    device_receiver._handle_rtp_packet = record
    try:
        answer = await relay.peer.answer(device.localDescription.sdp)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected)
        await wait_for(lambda: len(received) >= 60)
        sender = relay.peer.pc.getTransceivers()[0].sender
        direct = relay.track.direct
        assert direct is not None  # the direct path is bound
        # the ticks before DTLS was up sent nothing (and are no drops); since then every frame left
        assert relay.track.unsent > 0 and relay.track.dropped == 0
        # the echo comes back: the device decodes what the direct path sent
        tail = np.concatenate(received[-50:])
        assert abs(dominant_hz(tail, len(received[-1]) * 50) - 660) < 10
        assert np.sqrt(np.mean(tail.astype(float) ** 2)) > 1000
        # headers: one SSRC, consecutive sequence numbers, 20 ms of the 48 kHz clock apart, marker as aiortc sets it
        mid = relay.peer.pc.getTransceivers()[0].mid
        assert {p.ssrc for p in packets} == {sender._ssrc}
        opus_pt = int(re.search(r"a=rtpmap:(\d+) opus/48000", answer).group(1))
        assert {p.payload_type for p in packets} == {opus_pt}
        seqs = [p.sequence_number for p in packets]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        stamps = [p.timestamp for p in packets]
        assert all((b - a) & 0xFFFFFFFF == 960 for a, b in zip(stamps, stamps[1:], strict=False))
        assert all(p.marker == 1 for p in packets) and all(p.extensions.mid == mid for p in packets)
        # sender reports: the device's receiver learns the SR (remote-outbound-rtp), relay's sender
        # gets the device's RR back with an RTT, and the counters agree with what was sent
        async def stats(obj, kind):
            return [s for s in (await obj.getStats()).values() if s.type == kind]

        async def reports_exchanged() -> bool:
            rtt = [s for s in await stats(sender, "remote-inbound-rtp") if s.roundTripTime is not None]
            return bool(rtt and await stats(device_receiver, "remote-outbound-rtp"))

        async with asyncio.timeout(15):
            while not await reports_exchanged():  # noqa: ASYNC110 -- polling stats that have no event
                await asyncio.sleep(0.1)
        (remote_out,) = await stats(device_receiver, "remote-outbound-rtp")
        assert 0 < remote_out.packetsSent <= direct.packets_sent
        (outbound,) = await stats(sender, "outbound-rtp")
        heard = list(packets)
        assert outbound.packetsSent == direct.packets_sent >= len(heard)
        assert outbound.bytesSent >= sum(len(p.payload) for p in heard)  # payload octets, as aiortc counts
        (remote_in,) = await stats(sender, "remote-inbound-rtp")
        assert 0 <= remote_in.roundTripTime < 1.0
        (inbound,) = await stats(device_receiver, "inbound-rtp")
        assert inbound.packetsReceived >= len(packets) - 1
        (transport,) = await stats(sender, "transport")
        assert transport.packetsSent >= direct.packets_sent
        # a port per call: the call's own socket, its packets through the kernel's queue (sendmmsg)
        assert direct._queue.datagrams_sent >= len(heard) and direct._queue.send_errors == 0
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()
    # stop(): the stand-in RTP task ended, the track is unbound
    assert relay.track.direct is None and relay.track.readyState == "ended"
