"""The downlink track and encoder: bounded queue, RTP timing, silence cache, G.711 passthrough."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamError

from relay.media.codecs import OPUS, PCMA
from relay.media.downlink import DownlinkEncoder, PacketTrack
from relay.media.opus import OpusDecoder


async def test_a_slow_sender_never_piles_packets_up():
    enc = DownlinkEncoder(OPUS)
    track = PacketTrack(enc, max_queued=3)
    for _ in range(10):
        track.push(enc.encode(None))
    assert track.dropped == 7
    got = [await track.recv() for _ in range(3)]
    # timestamps keep advancing by 20 ms of the 48 kHz RTP clock, dropped frames included
    assert [p.pts for p in got] == [7 * 960, 8 * 960, 9 * 960]
    assert all(p.time_base.denominator == 48000 for p in got)


async def test_recv_waits_for_the_clock_and_ends_with_the_track():
    enc = DownlinkEncoder(PCMA)
    track = PacketTrack(enc)
    waiter = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert not waiter.done()
    track.push(b"\x55" * 160)
    packet = await waiter
    assert bytes(packet) == b"\x55" * 160 and packet.time_base.denominator == 8000
    waiter = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiter


def test_g711_is_passed_through_untouched_and_checked():
    enc = DownlinkEncoder(PCMA)
    frame = bytes(range(160))
    assert enc.encode(frame) is frame
    assert enc.encode(None) == b"\xd5" * 160
    with pytest.raises(ValueError):
        enc.encode(b"\x00" * 10)


def test_opus_silence_is_cached_and_decodes_to_silence():
    a, b = DownlinkEncoder(OPUS), DownlinkEncoder(OPUS)
    assert a.encode(None) is b.encode(None)
    pcm = OpusDecoder(24000).decode(a.encode(None))
    assert len(pcm) == 960 and max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True))
                                   for i in range(0, len(pcm), 2)) < 50


async def test_skip_advances_the_rtp_clock_without_a_packet():
    enc = DownlinkEncoder(OPUS)
    track = PacketTrack(enc)
    track.push(enc.encode(None))
    track.skip()
    track.skip()
    track.push(enc.encode(None))
    assert [(await track.recv()).pts for _ in range(2)] == [0, 3 * 960]


def test_inaudible_opus_frames_are_sent_as_the_cached_silence_not_encoded():
    import numpy as np

    from relay.media.downlink import QUIET_HANGOVER, QUIET_PEAK

    enc = DownlinkEncoder(OPUS)
    rng = np.random.default_rng(3)
    quiet = rng.integers(-QUIET_PEAK, QUIET_PEAK + 1, 480).astype("<i2").tobytes()
    # the first QUIET_HANGOVER quiet frames are encoded (fade-out), the rest are the cached payload
    hang = [enc.encode(quiet) for _ in range(QUIET_HANGOVER)]
    assert all(p is not enc.encode(None) for p in hang) and enc.quiet_frames == 0
    assert enc.encode(quiet) is enc.encode(None) and enc.quiet_frames == 1
    just_audible = np.zeros(480, "<i2")
    just_audible[100] = -(QUIET_PEAK + 1)
    assert enc.encode(just_audible.tobytes()) is not enc.encode(None) and enc.quiet_frames == 1
    # speech after quiet frames is still encoded and decodes to a tone at its level
    t = np.arange(480 * 10) / 24000
    tone = (6000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    dec = OpusDecoder(24000)
    for _ in range(QUIET_HANGOVER + 2):
        dec.decode(enc.encode(quiet))
    out = np.frombuffer(b"".join(dec.decode(enc.encode(tone[i:i + 960])) for i in range(0, len(tone), 960)), "<i2")
    assert enc.quiet_frames == 3
    assert 0.7 * 6000 / np.sqrt(2) < np.sqrt(np.mean(out[2400:].astype(float) ** 2)) < 1.3 * 6000 / np.sqrt(2)


def test_the_quiet_gate_keeps_speech_quality():
    """On espeak speech with pauses, the gated stream's log-spectral distance to the input stays
    within 0.05 dB of encoding every frame (the codec's own error is ~2.4 dB), and most pause
    frames are skipped."""
    import numpy as np

    from bench import opus_quality as oq

    pcm = oq.speech_24k()
    raw = pcm.astype("<i2").tobytes()

    def run(gate: bool) -> tuple[float, int]:
        enc, dec = DownlinkEncoder(OPUS, complexity=4), OpusDecoder(24000)
        encode = enc.encode if gate else enc._encoder.encode
        out = b"".join(dec.decode(encode(raw[i:i + 960])) for i in range(0, len(raw), 960))
        return oq.lsd_db(pcm, np.frombuffer(out, "<i2")), enc.quiet_frames

    (plain, _), (gated, skipped) = run(False), run(True)
    assert gated - plain < 0.05
    assert skipped > 0.1 * len(raw) / 960


def test_g711_frames_are_never_gated():
    enc = DownlinkEncoder(PCMA)
    frame = b"\xd5" * 159 + b"\xd4"
    assert enc.encode(frame) is frame and enc.quiet_frames == 0
