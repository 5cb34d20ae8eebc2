"""The direct uplink receive path (relay.media.rtp_in) against aiortc's own receive path.

* Differential: the same SRTP datagrams -- in order, reordered, lost, replayed, padded, with
  CSRCs and header extensions, across a sequence-number wrap, mixed with SRTCP, a foreign payload
  type and forged datagrams -- injected at relay's UDP protocol of two real loopback calls, one
  with the direct path and one without, give byte-identical uplink chunks, the same counters and
  the same receiver statistics (what RTCP receiver reports are built from).
* End to end: a real aiortc device's tone through relay's Peer is echoed back, and every uplink
  packet came through the direct path (its counter).
* Receiver reports: with uplink datagrams dropped on purpose, the device's sender sees relay's RR
  with the right loss and a highest sequence it really sent, and gets a round-trip time.
"""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from relay.media.codecs import OPUS, PCMU
from relay.media.metrics import MediaMetrics
from tests.e2e.conftest import relay as e2e_relay  # noqa: F401 -- the e2e fixtures: a real relay app, leak-checked
from tests.e2e.conftest import relay_factory  # noqa: F401
from tests.media import rtp_harness as h
from tests.media.test_peer import Loopback, connect_device, dominant_hz, wait_for

SSRC = 0x11223344
FOREIGN_PT = 126
# RFC 8285 one-byte elements as browsers send them: mid "0" (id 1), audio level 5 dBov + voice (id 2)
EXTENSIONS = bytes([0x10, ord("0"), 0x20, 0x85])


def scenario(side: h.Side) -> tuple[list[tuple], int]:
    """Ops for one side (its own SRTP keys) and how many audio packets the direct path must take
    (every authentic one but the packet queued behind the SRTCP one).

    Ops: ("in", datagram) inject then let the DTLS task drain; ("burst", [datagrams]) inject all
    without yielding in between.
    """
    pt = h.payload_type(side)
    payloads = h.speech_payloads(side.codec, 125)
    seq0, ts0 = 65_480, 4_294_960_000  # both wrap inside the stream
    step = 960 if side.codec.name == "opus" else 160

    def plain(i: int, **kw) -> bytes:
        return h.rtp(pt=pt, seq=seq0 + i, ts=ts0 + i * step, ssrc=SSRC, payload=payloads[i], **kw)

    order = list(range(0, 20))                                       # in order
    order += [21, 20, 22, 23, 25, 24, 26, 27, 28, 29, 31, 32, 33, 30, 34, 35, 37, 38, 36, 39]  # reordered
    order += [i for i in range(40, 60) if i != 42 and not 47 <= i <= 52 and i != 57]  # lost (one burst of 6)
    order += list(range(60, 80))                                     # (61 and 65 replayed below)
    order += list(range(80, 100))                                    # padded / CSRC / extensions
    order += [100, 101, 102, 103, 104, 106, 107, 108, 109, 110, 111, 112, 105, 113, 114, 115]  # 105 too late
    order += list(range(116, 124))
    ops: list[tuple] = []
    direct = 0
    for i in order:
        kw: dict = {}
        if 80 <= i < 100:
            kw = {"padding": 1 + i % 8 if i % 2 else 0, "csrcs": i % 3, "marker": int(i == 80),
                  "ext": EXTENSIONS if i % 4 == 0 else None}
        data = side.protect(plain(i, **kw))
        if i == 85:  # a forged copy first (bad auth tag): dropped; the genuine one still counts
            ops.append(("in", data[:-1] + bytes([data[-1] ^ 0xFF])))
        if i == 90:  # SRTCP queued for the DTLS task, then RTP at once: must not overtake it
            sr = RtcpSrPacket(ssrc=SSRC, sender_info=RtcpSenderInfo(ntp_timestamp=1 << 32, rtp_timestamp=0,
                                                                    packet_count=0, octet_count=0))
            ops.append(("burst", [side.protect_rtcp(bytes(sr)), data]))
            continue
        if i == 70:  # a foreign payload type: aiortc's path, which drops it
            ops.append(("in", side.protect(h.rtp(pt=FOREIGN_PT, seq=40_000, ts=0, ssrc=SSRC + 1, payload=b"x"))))
        ops.append(("in", data))
        direct += 1
        if i in (61, 65):  # replayed datagrams: SRTP rejects them on both paths
            ops += [("in", data)] * (2 if i == 65 else 1)
    # an empty payload and a padding-only packet at the end
    ops.append(("in", side.protect(h.rtp(pt=pt, seq=seq0 + 124, ts=ts0 + 124 * step, ssrc=SSRC, payload=b""))))
    ops.append(("in", side.protect(h.rtp(pt=pt, seq=seq0 + 125, ts=ts0 + 125 * step, ssrc=SSRC, payload=b"",
                                         padding=4))))
    return ops, direct + 2


async def play(side: h.Side, ops: list[tuple]) -> None:
    for kind, data in ops:
        if kind == "burst":
            for d in data:
                side.inject(d)
        else:
            side.inject(data)
        await side.settle()


@pytest.mark.parametrize("codec", [OPUS, PCMU], ids=["opus", "pcmu"])
async def test_direct_path_gives_what_aiortcs_path_gives(codec) -> None:
    old = await h.connect(codec, direct=False)
    new = await h.connect(codec, direct=True)
    try:
        dtls_rx = [s.dtls._RTCDtlsTransport__rx_packets for s in (old, new)]
        for side in (old, new):
            side.count_delivered()
        old_ops, _ = scenario(old)
        new_ops, direct_expected = scenario(new)
        await play(old, old_ops)
        await play(new, new_ops)

        assert old.chunks and len(old.chunks) >= 100 * 20 // 40 - 5
        assert new.chunks == old.chunks  # byte-identical uplink audio
        assert (new.metrics.rtp_in_packets, new.metrics.rtp_in_late, new.metrics.rtp_in_lost, new.metrics.rtp_in_bad) \
            == (old.metrics.rtp_in_packets, old.metrics.rtp_in_late, old.metrics.rtp_in_lost, old.metrics.rtp_in_bad)
        assert new.metrics.rtp_in_late >= 1 and new.metrics.rtp_in_lost >= 6
        assert new.stats() == old.stats()  # base/highest seq, cycles (the wrap), received, lost
        stats = new.stats()[SSRC]
        assert stats[2] == 1 << 16 and stats[4] == 6 + 1 + 1  # one wrap; 42, 47-52, 57 never arrived
        # the SR reached the receiver on both paths (RR's LSR/DLSR: the device's round-trip time)
        for side in (old, new):
            assert SSRC in side.receiver._RTCRtpReceiver__lsr
            assert side.dtls._rtp_router.ssrc_table[SSRC] is side.receiver
        # transport counters (getStats) count every datagram on both paths
        assert old.dtls._RTCDtlsTransport__rx_packets - dtls_rx[0] == old.delivered >= len(old_ops)
        assert new.dtls._RTCDtlsTransport__rx_packets - dtls_rx[1] == new.delivered >= len(new_ops)
        # taken directly: every authentic audio datagram but the one queued behind the SRTCP packet
        assert old.sink.direct_packets == 0
        assert new.sink.direct_packets == direct_expected
    finally:
        await old.close()
        await new.close()


async def test_hooks_every_socket_and_steps_aside_when_closed() -> None:
    side = await h.connect(OPUS, direct=True)
    try:
        protocols = side.connection._protocols
        assert protocols and all(getattr(p, "_relay_direct_path", None) is not None for p in protocols)
        # after close, datagrams go to aiortc's path again (DTLS not connected): nothing reaches the sink
        await side.relay.close()
        before = side.metrics.rtp_in_packets
        for p in protocols:
            p.datagram_received(h.rtp(pt=111, seq=1, ts=0, ssrc=1, payload=b"x"), ("127.0.0.1", 9))
        assert side.metrics.rtp_in_packets == before
    finally:
        await side.close()


async def test_real_device_echo_goes_through_the_direct_path() -> None:
    from relay.media.clock import MediaClock

    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    device, _, received = await connect_device(label="messages", tone_hz=550.0)
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    try:
        answer = await relay.peer.answer(device.localDescription.sdp)
        from aiortc import RTCSessionDescription

        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected)
        await wait_for(lambda: len(received) >= 60)
        tail = np.concatenate(received[-50:])
        assert abs(dominant_hz(tail, len(received[-1]) * 50) - 550) < 10
        assert np.sqrt(np.mean(tail.astype(float) ** 2)) > 1000
        # the uplink takes the direct path (a packet queued while DTLS completed may have gone aiortc's way)
        assert metrics.rtp_in_packets > 50 and metrics.rtp_in_bad == 0
        assert relay.peer.sink.direct_packets >= metrics.rtp_in_packets - 5
        start = (metrics.rtp_in_packets, relay.peer.sink.direct_packets)
        await wait_for(lambda: metrics.rtp_in_packets >= start[0] + 25)
        assert relay.peer.sink.direct_packets - start[1] == metrics.rtp_in_packets - start[0]
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()


async def test_receiver_reports_carry_loss_and_highest_sequence() -> None:
    """Drop 5 of the device's uplink datagrams; its sender must see relay's RR say so."""
    from aiortc import RTCSessionDescription

    from relay.media.clock import MediaClock

    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    device, _, received = await connect_device(label="messages")
    relay = Loopback(device.localDescription.sdp, metrics, clock)
    reports: list = []
    sender = device.getTransceivers()[0].sender
    original_rtcp = sender._handle_rtcp_packet

    async def record_rtcp(packet):
        reports.extend(r for r in getattr(packet, "reports", []) if r.ssrc == sender._ssrc)
        await original_rtcp(packet)

    sender._handle_rtcp_packet = record_rtcp
    delivered: set[int] = set()
    dropped: list[int] = []
    seen = [0]
    try:
        answer = await relay.peer.answer(device.localDescription.sdp)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected)
        await wait_for(lambda: relay.peer.sink.direct_packets > 0)
        connection = relay.peer.pc.getTransceivers()[0].receiver.transport.transport._connection
        for protocol in connection._protocols:
            hooked = protocol.datagram_received

            def drop_some(data, addr, hooked=hooked):
                if data and 127 < data[0] < 192 and not 191 < data[1] < 209:  # SRTP, not SRTCP
                    seq = struct.unpack_from("!H", data, 2)[0]  # the RTP header is not encrypted
                    seen[0] += 1
                    if len(dropped) < 5 and seen[0] % 10 == 0:
                        dropped.append(seq)
                        return
                    delivered.add(seq)
                hooked(data, addr)

            protocol.datagram_received = drop_some
        n_before = len(reports)  # RRs from before the first drop report no loss
        assert all(r.packets_lost == 0 for r in reports), reports
        await wait_for(lambda: len(dropped) == 5)
        await wait_for(lambda: reports and reports[-1].packets_lost == 5 and reports[-1].highest_sequence > max(dropped),
                       timeout_s=8)
        last = reports[-1]
        assert last.highest_sequence in delivered, (last, sorted(delivered)[-5:])
        # the interval that saw the drops reports a fraction lost (each RR covers the time since the last one)
        assert any(r.fraction_lost > 0 for r in reports[n_before:]), reports[n_before:]
        # getStats' remote-inbound-rtp: the loss, and a round-trip time once an RR answers one of the
        # device's sender reports (LSR/DLSR: the SR reached relay's receiver through the learned SSRC)
        remote: list = []

        async def poll_remote() -> None:
            async with asyncio.timeout(8):
                while True:
                    stats = await device.getStats()
                    remote[:] = [s for s in stats.values() if s.type == "remote-inbound-rtp"]
                    if remote and remote[0].roundTripTime is not None:
                        return
                    await asyncio.sleep(0.1)

        await poll_remote()
        assert remote[0].packetsLost == 5 and 0 <= remote[0].roundTripTime < 1.0
        assert relay.peer.sink.direct_packets >= metrics.rtp_in_packets - 5
        # the sink declares a gap lost once max_hold packets wait behind it (RR stats count it at once)
        await wait_for(lambda: metrics.rtp_in_lost >= 5)
        assert metrics.rtp_in_lost == 5
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()
    await asyncio.sleep(0)


@pytest.mark.parametrize("e2e_relay", ["mux", "ports"], indirect=True)  # the worker's one ICE port, or one per call
async def test_a_call_through_the_http_edge_uses_the_direct_path(e2e_relay) -> None:  # noqa: F811 (fixture)
    """POST /v1/realtime -> Call -> local assistant (echo): the uplink that is echoed came in directly.

    A packet that arrived while DTLS was completing is still in aiortc's queue when the path is armed
    and goes aiortc's way; from then on every packet is taken directly -- except, on the worker's one
    ICE port (drained a batch per wake-up), an audio packet that shares a batch with, and follows, one
    of the device's RTCP packets (~1 per second): it must not overtake that queued RTCP, so it goes
    aiortc's way too.
    """
    from relay.client import encode_pcm16_to_opus
    from tests.e2e.audio import RATE_HZ, Capture, bursts, dominant_hz

    capture, events = Capture(), []
    device = e2e_relay.device()
    metrics = e2e_relay.plane.metrics
    try:
        await device.connect(audio_source=encode_pcm16_to_opus(bursts([(0.3, 0.6, 440.0)], total_s=1.4), RATE_HZ),
                             on_audio=capture, on_event=events.append)
        calls = list(e2e_relay.plane.registry.calls())
        assert len(calls) == 1
        sink = calls[0].sink
        async with asyncio.timeout(15):
            while metrics.rtp_in_packets < 10:  # noqa: ASYNC110 -- polling state that has no event
                await asyncio.sleep(0.02)
            start = (metrics.rtp_in_packets, sink.direct_packets)
            mux = e2e_relay.plane.mux
            while mux is not None and not any(  # noqa: ASYNC110 -- on the worker's port: in compiled code
                    e._receiver.taking(slot) for e in mux._endpoints.values() for slot in e._paths):
                await asyncio.sleep(0.02)
            while "output_audio_buffer.stopped" not in [e["type"] for e in events]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert metrics.rtp_in_packets - start[0] >= 40
        slow = (metrics.rtp_in_packets - start[0]) - (sink.direct_packets - start[1])
        assert slow == 0 if e2e_relay.plane.mux is None else 0 <= slow <= 3
        assert sink.direct_packets >= metrics.rtp_in_packets - 5
    finally:
        await device.hangup()
    segments = capture.segments()
    assert segments, "the echo came back"
    # what the device heard back is what its uplink carried: the 0.6 s burst of 440 Hz, whole
    longest = max(segments, key=lambda seg: seg[1])
    assert 0.5 <= longest[1] <= 0.8
    assert abs(dominant_hz(capture.segment_samples(longest), capture.rate_hz) - 440) < 10


def test_statistics_aiortc_creates_become_the_compiled_drop_in() -> None:
    """A stream aiortc's path sees first (a packet queued while DTLS completed) gets ``StreamStats`` too."""
    from aiortc.rtcrtpreceiver import StreamStatistics
    from aiortc.rtp import RtpPacket

    from relay._fast import StreamStats
    from relay.media.rtp_in import _StatsDict

    streams = _StatsDict()
    streams[5] = StreamStatistics(8000)
    assert type(streams[5]) is StreamStats
    streams[5].add(RtpPacket(sequence_number=9, timestamp=160))
    assert (streams[5].base_seq, streams[5].max_seq, streams[5].packets_received) == (9, 9, 1)
