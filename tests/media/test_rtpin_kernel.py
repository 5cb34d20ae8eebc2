"""relay._fast.rtpin (compiled) and rtpin_py (twin) against aiortc 1.16 itself.

``parse_rtp`` must accept and reject exactly what ``aiortc.rtp.RtpPacket.parse`` does and
return the same header fields and payload; ``StreamStats`` must report what aiortc's
``StreamStatistics`` reports (the numbers RTCP receiver reports carry) for any arrival
order, with the same clock.
"""

from __future__ import annotations

import struct

import pytest
from aiortc import rtcrtpreceiver
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import rtpin, rtpin_py

IMPLS = pytest.mark.parametrize("mod", [rtpin, rtpin_py], ids=["compiled", "python"])


def build_rtp(*, pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: int = 0, csrcs: int = 0,
              ext_words: int | None = None, padding: int = 0, version: int = 2) -> bytes:
    b0 = (version << 6) | ((1 if padding else 0) << 5) | ((0 if ext_words is None else 1) << 4) | csrcs
    out = struct.pack("!BBHLL", b0, (marker << 7) | pt, seq, ts, ssrc)
    out += b"".join(struct.pack("!L", 0x1000 + i) for i in range(csrcs))
    if ext_words is not None:
        # one-byte header extensions (RFC 8285): id 1 len 1 (audio level), then padding
        body = (bytes([0x10, 0x85]) + bytes(4 * ext_words))[:4 * ext_words]
        out += struct.pack("!HH", 0xBEDE, ext_words) + body
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def aiortc_fields(data: bytes):
    p = RtpPacket.parse(data)
    return p.payload_type, p.marker, p.sequence_number, p.timestamp, p.ssrc, p.payload


packets = st.builds(
    build_rtp,
    pt=st.integers(0, 127), seq=st.integers(0, 0xFFFF), ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF), payload=st.binary(max_size=64), marker=st.integers(0, 1),
    csrcs=st.integers(0, 15), ext_words=st.none() | st.integers(0, 4), padding=st.integers(0, 8),
)


@IMPLS
@settings(max_examples=300, deadline=None)
@given(data=packets)
def test_parse_matches_aiortc_on_valid_packets(mod, data: bytes) -> None:
    assert mod.parse_rtp(data) == aiortc_fields(data)


@IMPLS
@settings(max_examples=500, deadline=None)
@given(data=st.one_of(st.binary(max_size=40), packets.map(lambda d: d[: len(d) // 2]),
                      packets.flatmap(lambda d: st.binary(min_size=1, max_size=1).map(lambda b: d[:-1] + b))))
def test_parse_accepts_and_rejects_what_aiortc_does(mod, data: bytes) -> None:
    try:
        expected = aiortc_fields(data)
    except ValueError as exc:
        with pytest.raises(ValueError) as caught:
            mod.parse_rtp(data)
        assert str(caught.value) == str(exc)
    else:
        assert mod.parse_rtp(data) == expected


@IMPLS
def test_parse_examples(mod) -> None:
    data = build_rtp(pt=111, seq=7, ts=960, ssrc=0xDEADBEEF, payload=b"opus", marker=1, csrcs=2, ext_words=1,
                     padding=3)
    assert mod.parse_rtp(data) == (111, 1, 7, 960, 0xDEADBEEF, b"opus")
    with pytest.raises(ValueError, match="invalid version"):
        mod.parse_rtp(build_rtp(pt=0, seq=0, ts=0, ssrc=0, payload=b"x", version=1))
    with pytest.raises(ValueError, match="padding length is invalid"):
        mod.parse_rtp(build_rtp(pt=0, seq=0, ts=0, ssrc=0, payload=b"", padding=1)[:-1] + b"\x05")
    with pytest.raises(TypeError):
        mod.parse_rtp("not bytes")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


def snapshot(stats) -> tuple:
    return (stats.base_seq, stats.max_seq, stats.cycles, stats.packets_received, stats.jitter,
            stats.packets_expected, stats.packets_lost, stats.fraction_lost)


arrivals = st.lists(st.tuples(st.integers(-40, 300), st.integers(-2000, 5000), st.floats(0.0, 0.2),
                              st.booleans()), min_size=1, max_size=120)


@IMPLS
@settings(max_examples=200, deadline=None)
@given(start_seq=st.integers(0, 0xFFFF), start_ts=st.integers(0, 0xFFFFFFFF), steps=arrivals,
       clockrate=st.sampled_from([8000, 48000]))
def test_stream_stats_match_aiortc(mod, start_seq, start_ts, steps, clockrate) -> None:
    """Random order, loss, duplicates, wraps: both report exactly what aiortc reports, read at any time
    (for the jitter, what aiortc reports without the timestamp wrap: it has no modulo 2**32)."""
    clock = FakeClock()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rtcrtpreceiver.time, "time", clock.time)  # the time module: aiortc's and the kernels' clock
        _run_stats(mod, clock, start_seq, start_ts, steps, clockrate)


def _run_stats(mod, clock, start_seq, start_ts, steps, clockrate) -> None:
    theirs = rtcrtpreceiver.StreamStatistics(clockrate)
    ours = mod.StreamStats(clockrate)
    mine_via_add = mod.StreamStats(clockrate)
    seq, ts, unwrapped = start_seq, start_ts, start_ts
    for dseq, dts, dt, read in steps:
        seq, ts, unwrapped = (seq + dseq) & 0xFFFF, (ts + dts) & 0xFFFFFFFF, unwrapped + dts
        clock.now += dt
        packet = RtpPacket(sequence_number=seq, timestamp=ts)
        # aiortc's jitter is right only without a timestamp wrap: it gets the unwrapped timestamps
        theirs.add(RtpPacket(sequence_number=seq, timestamp=unwrapped))
        ours.update(seq, ts, clock.now)
        mine_via_add.add(packet)
        if read:
            expected = snapshot(theirs)
            assert snapshot(ours) == expected
            assert snapshot(mine_via_add) == expected


def test_compiled_add_takes_a_packet() -> None:
    stats = rtpin.StreamStats(48000)
    stats.add(RtpPacket(sequence_number=10, timestamp=0))
    stats.add(RtpPacket(sequence_number=13, timestamp=2880))
    assert (stats.base_seq, stats.max_seq, stats.packets_received, stats.packets_lost) == (10, 13, 2, 2)
    assert stats.fraction_lost == (2 << 8) // 4 and stats.fraction_lost == 0


@IMPLS
def test_jitter_across_a_timestamp_wrap(mod) -> None:
    """Packets on time across the 2**32 wrap of the RTP timestamp: no jitter (aiortc reports ~2**28)."""
    stats, theirs = mod.StreamStats(48000), rtcrtpreceiver.StreamStatistics(48000)
    clock = FakeClock()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rtcrtpreceiver.time, "time", clock.time)
        for i in range(20):
            ts = (0xFFFFFFFF - 5 * 960 + i * 960) & 0xFFFFFFFF
            stats.update(100 + i, ts, clock.now)
            theirs.add(RtpPacket(sequence_number=100 + i, timestamp=ts))
            clock.now += 0.02
    assert stats.jitter == 0 and stats.packets_lost == 0
    assert theirs.jitter > 1 << 20  # aiortc's own estimate is thrown off by the wrap
