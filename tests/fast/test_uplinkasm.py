"""relay._fast UplinkAssembler: the compiled uplink (bucket, reorder, Opus decode + FEC/PLC, G.711, chunks) == its twin.

Both get the very same packets (sequence number, payload, arrival time) and must hand the same chunks
(byte for byte, with the same arrival times) to ``on_chunk`` and count the same: in order, reordered,
duplicated, late, gaps with and without in-band FEC, floods, corrupt Opus, G.711 PCMU/PCMA, sequence
wraparound, a close from inside ``on_chunk``, an ``on_chunk`` that raises, and random mixes of all of
them. Then the compiled receive path of the worker's ICE port (``MuxReceiver``) feeds the compiled
assembler from C and must give what the twin port + twin assembler give for the same SRTP datagrams.
"""

from __future__ import annotations

import random
import socket
import struct

import numpy as np
import pylibsrtp
import pytest

from relay._fast import rtpin, rtpin_py, udpbatch, udpbatch_py, uplinkasm, uplinkasm_py
from relay.media.opus import DECODE_FN, OpusDecoder, OpusEncoder

RATE = 24000
OPUS_CHUNK = 40 * 48  # 40 ms of 24 kHz PCM16
KINDS = {"compiled": uplinkasm, "python": uplinkasm_py}
SILENCE = {"PCMU": 0xFF, "PCMA": 0xD5}


def _opus_packets(n: int, *, fec: bool, seed: int = 0) -> list[bytes]:
    """n 20 ms packets of a voice-like signal (a gliding tone with noise), 24 kHz mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(n * 480) / RATE
    signal = 6000 * np.sin(2 * np.pi * (300 + 200 * np.sin(2 * np.pi * 0.7 * t)) * t) + rng.normal(0, 300, t.size)
    pcm = signal.astype("<i2").tobytes()
    enc = OpusEncoder(RATE, fec=fec, fec_loss_perc=20, bitrate_bps=24000)
    try:
        return [enc.encode(pcm[i * 960:(i + 1) * 960]) for i in range(n)]
    finally:
        enc.close()


def _g711_packets(n: int) -> list[bytes]:
    return [bytes((i * 7 + j) % 256 for j in range(160)) for i in range(n)]


class Run:
    """One assembler of one kind, recording chunks, raised exceptions and counts."""

    def __init__(self, kind: str, codec: str, *, chunk_bytes: int, close_after: int | None = None,
                 raise_every: int | None = None, **limits: float) -> None:
        self.chunks: list[tuple[bytes, float]] = []
        self.errors: list[str] = []
        self.close_after, self.raise_every = close_after, raise_every
        decoder = OpusDecoder(RATE) if codec == "opus" else None
        self.asm = KINDS[kind].UplinkAssembler(decoder, DECODE_FN, SILENCE.get(codec, 0), chunk_bytes=chunk_bytes,
                                               on_chunk=self._on_chunk, **limits)

    def _on_chunk(self, chunk: bytes, arrival: float) -> None:
        self.chunks.append((chunk, arrival))
        if self.close_after is not None and len(self.chunks) >= self.close_after:
            self.asm.close()
        if self.raise_every and len(self.chunks) % self.raise_every == 0:
            raise RuntimeError(f"chunk {len(self.chunks)}")

    def feed(self, packets: list[tuple[int, bytes, float]], *, direct_every: int = 3) -> tuple:
        for i, (seq, payload, arrival) in enumerate(packets):
            push = self.asm.push_direct if i % direct_every == 0 else self.asm.push
            try:
                push(seq, payload, arrival)
            except RuntimeError as exc:
                self.errors.append(f"{i}: {exc}")
        counts = self.asm.take_counts()
        return self.chunks, self.errors, counts, self.asm.closed


def both(codec: str, packets: list[tuple[int, bytes, float]], **kw) -> tuple:
    compiled = Run("compiled", codec, **kw).feed(packets)
    python = Run("python", codec, **kw).feed(packets)
    assert compiled == python
    return compiled


def timed(seqs: list[int], payloads: dict[int, bytes], *, start: float = 10.0, step: float = 0.02):
    return [(s & 0xFFFF, payloads[s], start + i * step) for i, s in enumerate(seqs)]


def test_the_compiled_one_is_an_extension() -> None:
    assert uplinkasm.__file__ is not None and uplinkasm.__file__.endswith(".so"), uplinkasm.__file__
    assert uplinkasm_py.__file__ is not None and uplinkasm_py.__file__.endswith(".py")


def test_opus_in_order_is_a_plain_decode_in_chunks() -> None:
    packets = _opus_packets(50, fec=True)
    chunks, errors, counts, _ = both("opus", timed(list(range(50)), dict(enumerate(packets))), chunk_bytes=OPUS_CHUNK)
    reference = OpusDecoder(RATE)
    pcm = b"".join(reference.decode(p) for p in packets)
    assert b"".join(c for c, _ in chunks) == pcm[:len(chunks) * OPUS_CHUNK] and len(chunks) == 25
    assert [a for _, a in chunks] == [10.0 + 0.02 * (2 * i + 1) for i in range(25)]  # the completing packet's
    assert errors == [] and counts == (50, 0, 0, 0, 0, 17)


def test_reordered_duplicated_and_late() -> None:
    packets = dict(enumerate(_opus_packets(40, fec=True)))
    seqs = [0, 2, 1, 3, 3, 5, 4, 6, 1, 8, 7, 9, 9, 10] + list(range(11, 40))
    chunks, _, counts, _ = both("opus", timed(seqs, packets), chunk_bytes=OPUS_CHUNK)
    assert counts[:5] == (len(seqs), 0, 3, 0, 0)  # 3 late or duplicate (3, 1, 9)
    assert len(chunks) == 20


@pytest.mark.parametrize("fec", [True, False], ids=["fec", "no-fec"])
@pytest.mark.parametrize("max_conceal", [5, 1, 0])
def test_gaps_are_recovered_or_concealed(fec: bool, max_conceal: int) -> None:
    packets = dict(enumerate(_opus_packets(80, fec=fec)))
    seqs = [s for s in range(80) if s not in (5, 20, 21, 40, 41, 42, 43, 44, 45, 46, 47)]
    chunks, _, counts, _ = both("opus", timed(seqs, packets), chunk_bytes=960, max_conceal=max_conceal)
    assert counts[3] == 11  # lost
    assert len(chunks) == len(seqs) + min(1, max_conceal) + min(2, max_conceal) + min(8, max_conceal)


def test_fec_recovery_differs_from_concealment() -> None:
    """The recovered frame is the next packet's FEC, not PLC."""
    packets = _opus_packets(8, fec=True)
    seqs = [0, 1, 3, 4, 5, 6, 7]  # 2 lost: declared so when 6 makes 4 held (max_hold 3)
    with_fec = both("opus", timed(seqs, dict(enumerate(packets))), chunk_bytes=960)[0]
    assert len(with_fec) == 8
    reference = OpusDecoder(RATE)
    reference.decode(packets[0])
    reference.decode(packets[1])
    plc = OpusDecoder(RATE)
    plc.decode(packets[0])
    plc.decode(packets[1])
    assert with_fec[2][0] == reference.decode_fec(packets[3], 20) != plc.conceal(20)


def test_flood_is_dropped_before_decoding() -> None:
    packets = dict(enumerate(_opus_packets(300, fec=False)))
    burst = [(s, packets[s], 5.0) for s in range(300)]  # 6 s of audio in one instant
    chunks, _, counts, _ = both("opus", burst, chunk_bytes=960, max_packets_per_s=50.0)
    assert counts[:2] == (300, 275) and len(chunks) == 25  # the burst: half the rate
    steady = [(s, packets[s], 5.0 + s * 0.01) for s in range(300)]  # twice the allowed rate
    _, _, counts, _ = both("opus", steady, chunk_bytes=960, max_packets_per_s=50.0)
    assert 110 <= counts[1] <= 140  # ~25 + 3 s x 50/s of 300 pass


def test_corrupt_opus_counts_bad_and_is_skipped() -> None:
    packets = dict(enumerate(_opus_packets(20, fec=True)))
    packets[4] = b"\xff\xff\xff"
    packets[9] = b""  # empty: skipped, not bad
    packets[12] = b"\x00"  # a 1-byte packet (TOC only): libopus' PLC for it, not bad
    chunks, _, counts, _ = both("opus", timed(list(range(20)), packets), chunk_bytes=480)
    assert counts[4] == 1 and len(chunks) == 2 * (20 - 2) - 1  # packet 12: one 10 ms frame


def test_fec_from_a_corrupt_next_packet_conceals() -> None:
    packets = dict(enumerate(_opus_packets(12, fec=True)))
    packets[3] = b"\xff\xff\xff"  # the packet after the gap is corrupt: no FEC, conceal
    seqs = [0, 1, 3, 4, 5, 6, 7, 8, 9]
    chunks, _, counts, _ = both("opus", timed(seqs, packets), chunk_bytes=960)
    assert counts[3] == 1 and counts[4] == 1


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_g711_passthrough_with_silence_for_gaps(codec: str) -> None:
    packets = dict(enumerate(_g711_packets(30)))
    seqs = [0, 1, 2, 4, 5, 6, 7, 8, 3] + list(range(9, 30))
    chunks, _, counts, _ = both(codec, timed(seqs, packets), chunk_bytes=160)
    silence = bytes([SILENCE[codec]]) * 160
    assert [c for c, _ in chunks] == [packets[0], packets[1], packets[2], silence] + [packets[s] for s in range(4, 30)]
    assert counts[2:4] == (1, 1)  # 3: late; one lost


def test_g711_odd_sizes_accumulate() -> None:
    rng = random.Random(7)
    payloads = {s: rng.randbytes(rng.choice([80, 160, 240, 0, 1000])) for s in range(40)}
    chunks, _, _, _ = both("PCMU", timed(list(range(40)), payloads), chunk_bytes=320)
    assert b"".join(c for c, _ in chunks) == b"".join(payloads[s] for s in range(40))[:len(chunks) * 320]


@pytest.mark.parametrize("codec", ["opus", "PCMA"])
def test_sequence_numbers_wrap(codec: str) -> None:
    n = 30
    payloads = dict(zip(range(65520, 65520 + n),
                        _opus_packets(n, fec=True) if codec == "opus" else _g711_packets(n), strict=True))
    seqs = [s for s in range(65520, 65520 + n) if s != 65536] + [65536, 65530]  # 0 lost across the wrap, then late
    chunks, _, counts, _ = both(codec, timed(seqs, payloads), chunk_bytes=960 if codec == "opus" else 160)
    assert counts[2:4] == (2, 1) and len(chunks) == n


@pytest.mark.parametrize("codec", ["opus", "PCMU"])
def test_close_from_on_chunk_mid_stream(codec: str) -> None:
    n = 40
    payloads = dict(enumerate(_opus_packets(n, fec=True) if codec == "opus" else _g711_packets(n)))
    seqs = [0, 1, 2, 5, 6, 7, 8] + list(range(9, n))  # the gap's concealment completes the closing chunk
    chunks, _, counts, closed = both(codec, timed(seqs, payloads), chunk_bytes=960 if codec == "opus" else 160,
                                     close_after=4)
    assert closed and len(chunks) == 4 and counts[0] == 7  # nothing counted after the close


def test_on_chunk_raising_is_raised_once_the_packet_is_done() -> None:
    payloads = dict(enumerate(_g711_packets(20)))
    seqs = [0, 2, 3, 4, 5] + list(range(6, 20))
    chunks, errors, counts, _ = both("PCMU", timed(seqs, payloads), chunk_bytes=160, raise_every=2)
    assert len(chunks) == 20 and errors and counts[3] == 1  # the gap: its packet's other chunks still came


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("codec", ["opus", "PCMU"])
def test_random_mixes(seed: int, codec: str) -> None:
    rng = random.Random(seed)
    n = 200
    base = rng.randrange(65536)
    raw = _opus_packets(n, fec=rng.random() < 0.7, seed=seed) if codec == "opus" else _g711_packets(n)
    packets: list[tuple[int, bytes, float]] = []
    t = 100.0
    for i in range(n):
        roll = rng.random()
        payload = raw[i]
        if roll < 0.05:
            continue  # lost
        if roll < 0.08:
            payload = rng.randbytes(rng.randint(0, 40))  # corrupt (or empty)
        t += rng.choice([0.02, 0.02, 0.0, 0.001, 0.05])  # bursts and stalls: the bucket sees both
        packets.append(((base + i) & 0xFFFF, payload, t))
        if roll > 0.93 and packets:
            packets.append(rng.choice(packets))  # a duplicate, maybe late
    for _ in range(n // 10):  # some swapped neighbours, some far ones
        i = rng.randrange(len(packets) - 1)
        j = min(len(packets) - 1, i + rng.choice([1, 1, 2, 5]))
        packets[i], packets[j] = packets[j], packets[i]
    limits = {"max_hold": rng.choice([0, 1, 3, 8]), "max_conceal": rng.choice([0, 1, 5]),
              "max_packets_per_s": rng.choice([60.0, 100.0])}
    chunk = rng.choice([20, 40, 60]) * (48 if codec == "opus" else 8)
    chunks, _, counts, _ = both(codec, packets, chunk_bytes=chunk, **limits)
    assert counts[0] == len(packets) and chunks


def test_arguments_are_checked_alike() -> None:
    def errors(mod, **kw):
        args = {"chunk_bytes": 960, "on_chunk": print} | kw
        decoder = args.pop("decoder", None)
        try:
            mod.UplinkAssembler(decoder, DECODE_FN, args.pop("silence", 0xFF), **args)
        except (ValueError, TypeError) as exc:
            return type(exc)
        return None

    closed = OpusDecoder(RATE)
    closed.close()
    cases = [{"chunk_bytes": 0}, {"on_chunk": 3}, {"max_hold": -1}, {"max_hold": 65}, {"max_conceal": 1001},
             {"max_packets_per_s": 1.0}, {"silence": 256}, {"decoder": closed}]
    for case in cases:
        assert errors(uplinkasm, **case) == errors(uplinkasm_py, **case) is not None, case
    for mod in KINDS.values():
        asm = mod.UplinkAssembler(None, 0, 0xFF, chunk_bytes=160, on_chunk=print)
        with pytest.raises(ValueError):
            asm.push(65536, b"x")
        with pytest.raises(TypeError):
            asm.push(1, "text")
        asm.push(1, bytearray(3))
        asm.push(2, memoryview(b"abc"))
        assert asm.take_counts() == (2, 0, 0, 0, 0, 0)


def test_the_decoder_is_closed_with_the_assembler() -> None:
    for mod in KINDS.values():
        decoder = OpusDecoder(RATE)
        asm = mod.UplinkAssembler(decoder, DECODE_FN, 0, chunk_bytes=960, on_chunk=print)
        asm.close()
        assert decoder.state == 0 and asm.closed
        asm.push(1, _opus_packets(1, fec=False)[0])
        assert asm.take_counts() == (0, 0, 0, 0, 0, 0)


# -- the worker's ICE port feeds the assembler from C ----------------------------------------------------

KEY = bytes(range(30))
SSRC = 0x51223344
PT = 111


def _srtp(direction: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=KEY, ssrc_type=direction, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    return pylibsrtp.Session(policy=policy)


def _through_port(port_mod, stats_mod, asm_mod, datagrams: list[bytes]) -> tuple:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    chunks: list[bytes] = []
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        tx.bind(("127.0.0.1", 0))
        receiver = port_mod.MuxReceiver(16, 2048)
        slot = receiver.new_slot()
        receiver.bind("127.0.0.1", tx.getsockname()[1], slot)
        asm = asm_mod.UplinkAssembler(OpusDecoder(RATE), DECODE_FN, 0, chunk_bytes=OPUS_CHUNK,
                                      on_chunk=lambda c, _t: chunks.append(c), max_packets_per_s=1000.0)
        receiver.arm(slot, _srtp(pylibsrtp.Policy.SSRC_ANY_INBOUND), [PT], SSRC, stats_mod.StreamStats(48000), asm)
        for start in range(0, len(datagrams), 5):
            for data in datagrams[start:start + 5]:
                tx.sendto(data, rx.getsockname())
            while True:
                back = receiver.recv(rx, 1.0, 2.0)
                assert back == []
                if not receiver.received:
                    break
        return chunks, asm.take_counts(), receiver.take_counts(slot), receiver.push_errors
    finally:
        rx.close()
        tx.close()


def test_the_port_feeds_the_compiled_assembler_from_c() -> None:
    payloads = _opus_packets(60, fec=True)
    protect = _srtp(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    order = [s for s in range(60) if s not in (10, 30, 31)]
    order[20], order[21] = order[21], order[20]
    datagrams = []
    for seq in order:
        header = struct.pack("!BBHII", 0x80, PT, seq, 960 * seq, SSRC)
        datagrams.append(protect.protect(header + payloads[seq]))
    compiled = _through_port(udpbatch, rtpin, uplinkasm, datagrams)
    python = _through_port(udpbatch_py, rtpin_py, uplinkasm_py, datagrams)
    assert compiled == python
    chunks, counts, port_counts, push_errors = compiled
    assert counts == (57, 0, 0, 3, 0, 57) and port_counts[0] == 57 and push_errors == 0
    assert len(chunks) == 30  # 57 packets + 3 recovered frames
