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
