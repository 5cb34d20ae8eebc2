"""UplinkSink (sans-I/O): chunking, reordering, loss concealment, late packets, G.711 passthrough."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from relay.call.metrics import MediaMetrics
from relay.media.codecs import OPUS, PCMU
from relay.media.opus import OpusEncoder
from relay.media.uplink import UplinkSink


@dataclass
class Pkt:
    sequence_number: int
    _data: bytes


def make_sink(codec, chunk_ms=40):
    chunks: list[bytes] = []
    metrics = MediaMetrics()
    sink = UplinkSink(codec, chunk_ms=chunk_ms, on_chunk=lambda c, t: chunks.append(c), metrics=metrics)
    return sink, chunks, metrics


def g711_frames(n):
    return [bytes([i % 256]) * 160 for i in range(n)]


def test_g711_passthrough_in_order_chunks():
    sink, chunks, _ = make_sink(PCMU, chunk_ms=40)
    frames = g711_frames(4)
    for i, f in enumerate(frames):
        sink.add(Pkt(100 + i, f))
    assert chunks == [frames[0] + frames[1], frames[2] + frames[3]]


def test_reorder_within_window():
    sink, chunks, m = make_sink(PCMU, chunk_ms=20)
    frames = g711_frames(4)
    for seq in (0, 2, 1, 3):
        sink.add(Pkt(seq, frames[seq]))
    assert chunks == frames and m.rtp_in_lost == 0


def test_gap_concealed_after_hold_window():
    sink, chunks, m = make_sink(PCMU, chunk_ms=20)
    frames = g711_frames(10)
    sink.add(Pkt(0, frames[0]))
    for seq in (2, 3, 4, 5):  # 1 never arrives; 4 held > max_hold=3
        sink.add(Pkt(seq, frames[seq]))
    assert m.rtp_in_lost == 1
    assert chunks[0] == frames[0] and chunks[1] == b"\xff" * 160 and chunks[2:] == frames[2:6]
    sink.add(Pkt(1, frames[1]))  # too late now
    assert m.rtp_in_late == 1 and len(chunks) == 6


def test_duplicates_dropped_and_sequence_wraps():
    sink, chunks, m = make_sink(PCMU, chunk_ms=20)
    frames = g711_frames(3)
    sink.add(Pkt(65535, frames[0]))
    sink.add(Pkt(65535, frames[0]))
    sink.add(Pkt(0, frames[1]))
    sink.add(Pkt(1, frames[2]))
    assert chunks == frames and m.rtp_in_late == 1


def test_opus_decodes_to_24k_chunks_and_skips_corrupt_packets():
    enc = OpusEncoder(48000)
    t = np.arange(48000) / 48000
    pcm = (6000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    packets = [enc.encode(pcm[i:i + 1920]) for i in range(0, len(pcm), 1920)]
    sink, chunks, m = make_sink(OPUS, chunk_ms=40)
    for i, p in enumerate(packets):
        sink.add(Pkt(i, p if i != 10 else b"\xff\xff\xff"))
    assert m.rtp_in_bad == 1
    assert all(len(c) == 40 * 48 for c in chunks)  # 40 ms of 24 kHz PCM16
    assert len(chunks) == (len(packets) - 1) // 2


def test_chunk_length_is_validated():
    with pytest.raises(ValueError):
        make_sink(OPUS, chunk_ms=5)


def test_closed_sink_ignores_packets():
    sink, chunks, _ = make_sink(PCMU, chunk_ms=20)
    sink.close()
    sink.add(Pkt(0, b"\x00" * 160))
    assert chunks == []


def test_packet_flood_is_dropped_before_decoding():
    sink, chunks, m = make_sink(PCMU, chunk_ms=20)
    for seq in range(500):  # 500 packets in a burst (10 s worth of audio at once)
        sink.add(Pkt(seq, b"\x00" * 160))
    assert m.rtp_in_flood >= 400 and len(chunks) <= 100


def test_token_bucket():
    from relay.call.ratelimit import TokenBucket

    bucket = TokenBucket(10, burst=5)
    assert [bucket.allow(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.allow(0.1) and not bucket.allow(0.1)
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_counts_fed_past_python_reach_the_metrics_exactly() -> None:
    """The worker's ICE port feeds ``sink.assembler`` from C; ``sync`` (each chunk, every 250 ms, close)
    brings the worker's counters and ``direct_packets`` up to date, exactly."""
    sink, chunks, m = make_sink(PCMU, chunk_ms=40)
    frames = g711_frames(12)
    for seq in (0, 1, 2, 4, 5, 6, 7, 2, 9, 10):  # 3 lost (declared at 7: 4 held), 2 late, 9 and 10 held
        sink.assembler(seq, frames[seq])  # what the port does (the compiled port: its C entry)
    assert len(chunks) == 4  # the last one completed by packet 7: counted up to it, not what came after
    assert (m.rtp_in_packets, m.rtp_in_late, m.rtp_in_lost, sink.direct_packets) == (7, 0, 1, 7)
    sink.sync()
    assert (m.rtp_in_packets, m.rtp_in_late, m.rtp_in_lost, sink.direct_packets) == (10, 1, 1, 10)
    sink.add(Pkt(11, frames[11]))  # aiortc's path: synced at once, not direct
    assert (m.rtp_in_packets, sink.direct_packets) == (11, 10)
    sink.close()
    assert sink.closed and (m.rtp_in_packets, m.rtp_in_flood, m.rtp_in_bad) == (11, 0, 0)
