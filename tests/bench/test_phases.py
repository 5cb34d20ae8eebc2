"""Device start points: random (seeded) phases within the frame and the audio, or all in step."""

from __future__ import annotations

import asyncio

import pytest

from bench import device as bench_device
from bench.device import PhasedPacketTrack
from bench.runner import encode_batches, start_points


def test_random_start_points_differ_and_are_reproducible():
    pts = start_points(50, 1000, "random", seed=7)
    assert len(pts) == 50
    assert all(0.0 <= phase < 0.02 and 0 <= idx < 1000 for phase, idx in pts)
    # spread over the frame and over the audio, not in step
    assert len({round(p, 6) for p, _ in pts}) == 50 and len({i for _, i in pts}) > 40
    phases = sorted(p for p, _ in pts)
    assert phases[0] < 0.005 and phases[-1] > 0.015
    assert start_points(50, 1000, "random", seed=7) == pts
    assert start_points(50, 1000, "random", seed=8) != pts


def test_aligned_start_points_are_in_step():
    assert start_points(5, 1000, "aligned", seed=7) == [(0.0, 0)] * 5
    with pytest.raises(ValueError):
        start_points(5, 1000, "sideways", seed=1)


async def test_track_starts_at_its_index_after_its_phase(monkeypatch):
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def record(delay: float, *args):
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(bench_device.asyncio, "sleep", record)
    sent: list[int] = []
    packets = [bytes([i]) for i in range(10)]
    track = PhasedPacketTrack(packets, phase_s=0.013, start_index=8, on_sent=lambda i, t: sent.append(i))
    first = await track.recv()
    assert slept[0] == 0.013  # the phase: once, before the first frame
    assert bytes(first) == b"\x08"
    track._start_s -= 1.0  # pretend the schedule is due: no pacing waits in this test
    for _ in range(3):
        await track.recv()
    assert sent == [8, 9, 0, 1]  # from its start index, looping
    assert slept.count(0.013) == 1
    with pytest.raises(ValueError):
        PhasedPacketTrack(packets, phase_s=-0.1)


def test_encode_batches_from_two_stats_snapshots():
    a = {"clock_ticks": 100, "frames_out": 1000, "frames_out_silent": 600, "clock_encode_batch": {"count": 80}}
    b = {"clock_ticks": 600, "frames_out": 6000, "frames_out_silent": 3100, "clock_encode_batch": {"count": 480}}
    got = encode_batches(a, b)
    assert got == {"ticks": 500, "encode_batches": 400, "audio_frames": 2500, "audio_frames_per_batch": 6.25,
                   "batches_per_tick": 0.8}
    assert encode_batches(None, b) is None
    assert encode_batches({"clock_ticks": 1}, b) is None


@pytest.mark.slow
async def test_fast_device_media_bypasses_aiortcs_per_packet_path(relay_url_for):
    """After set-up a fast device's audio goes through the socket hook and the shared send task:
    aiortc's sender sends no RTP, every packet reaches the detectors, and relay hears and answers the device."""
    from bench.audio import build
    from bench.device import Device, DeviceConfig

    url = await relay_url_for("relay-loopback")
    audio = build(None, markers=True, marker_interval_ms=500, min_duration_s=3.0)
    dev = Device(0, DeviceConfig(url, "fastpath-dev-0001", "fastpath-secret-0001-" + "0" * 16, demo=True,
                                 phase_s=0.007, start_index=5), audio)
    await dev.start()
    assert dev.result.ok, dev.result.error
    try:
        for _ in range(100):  # up to ~10 s: a marker back and 50 packets heard
            if dev.matcher.rtts_ms and dev.client.receiver.stats.packets >= 50:
                break
            await asyncio.sleep(0.1)
        assert dev.direct_rx is not None and dev.sender is not None
        assert dev.sender.frames_sent > 20 and dev.direct_rx.packets > 20
        sender = next(t for t in dev.client.pc.getTransceivers() if t.kind == "audio").sender
        assert sender._RTCRtpSender__packet_count == 0  # aiortc's sender: no RTP of its own
        rx = dev.direct_rx
        assert rx.packets > rx.slow_packets  # mostly taken directly...
        assert dev.packets_seen == rx.packets + rx.slow_packets  # ...and every one reached the detectors
        assert dev.matcher.rtts_ms, "a marker came back through relay's loopback"
        # audio that still goes aiortc's way (queued behind a data-channel record) reaches the detectors too
        from aiortc.rtp import RtpPacket

        seen, slow = dev.packets_seen, rx.slow_packets
        aiortc_receiver = next(t for t in dev.client.pc.getTransceivers() if t.kind == "audio").receiver
        pkt = RtpPacket(payload_type=111, sequence_number=1, timestamp=960)
        pkt.payload = audio.packets[0]
        await aiortc_receiver._handle_rtp_packet(pkt, 0)
        assert rx.slow_packets == slow + 1 and dev.packets_seen >= seen + 1
    finally:
        result = await dev.stop()
    assert result.frames_sent > 20 and result.frames_received > 20 and result.start_index == 5
