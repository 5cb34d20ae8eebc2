"""relay._fast MuxReceiver: the compiled SRTP audio path of the worker's ICE port == its pure-Python twin.

Both get the very same datagrams on real sockets (SRTP audio from bound sources, replays, tampered
packets, wrong SSRC / payload type, SRTCP, short and long datagrams, STUN and DTLS, an unknown
source) and must deliver the same payloads to ``push``, hand back the same datagrams in the same
order, count the same, and leave the same receiver statistics.
"""

from __future__ import annotations

import os
import random
import socket
import struct

import pylibsrtp
import pytest

from relay._fast import rtpin, rtpin_py, udpbatch, udpbatch_py

KEY = bytes(range(30))
SSRC = 0xF1223344  # above 2**31
PT = 111
HOST = "127.0.0.1"
FAMILIES = pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])


def _session(direction: int, key: bytes = KEY) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    return pylibsrtp.Session(policy=policy)


def _rtp(seq: int, *, ts: int | None = None, pt: int = PT, ssrc: int = SSRC, payload: bytes = b"", marker: int = 0,
         padding: int = 0, extension: bytes | None = None) -> bytes:
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0)
    header = struct.pack("!BBHII", b0, (marker << 7) | pt, seq & 0xFFFF, (960 * seq if ts is None else ts) & 0xFFFFFFFF,
                         ssrc)
    if extension is not None:
        header += extension
    if padding:
        payload += bytes(padding - 1) + bytes([padding if padding > 0 else 0])
    return header + payload


def _datagrams(rng: random.Random) -> list[tuple[str, bytes]]:
    """(sender, datagram): "a" and "b" are bound to the slot, "x" is an unknown source."""
    tx = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    other = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND, key=bytes(30))
    out: list[tuple[str, bytes]] = []
    for seq in range(1, 120):
        kind = rng.random()
        payload = rng.randbytes(rng.randint(0, 160))
        if kind < 0.5:
            out.append((rng.choice("ab"), tx.protect(_rtp(seq, payload=payload, marker=rng.randint(0, 1)))))
        elif kind < 0.55 and out:
            out.append(rng.choice(out))  # a replay (or a repeat of anything)
        elif kind < 0.6:
            good = bytearray(tx.protect(_rtp(seq, payload=payload)))
            good[-1] ^= 1  # authentication fails
            out.append(("a", bytes(good)))
        elif kind < 0.65:
            out.append(("a", tx.protect(_rtp(seq, payload=payload, ssrc=SSRC + 1))))  # another SSRC
        elif kind < 0.7:
            out.append(("a", tx.protect(_rtp(seq, payload=payload, pt=96))))  # another payload type
        elif kind < 0.75:
            rtcp = struct.pack("!BBHI", 0x80, 201, 1, SSRC)  # an empty receiver report
            out.append(("a", tx.protect_rtcp(rtcp)))
        elif kind < 0.78:
            out.append(("a", rng.randbytes(rng.randint(1, 11)).rjust(1, b"\x80")))  # short
        elif kind < 0.8:
            out.append(("a", bytes([0x80, PT]) + rng.randbytes(1600)))  # longer than SRTP's 1500 bytes
        elif kind < 0.83:  # parses badly once unprotected: padding longer than the payload
            out.append(("a", tx.protect(_bad_padding(seq))))
        elif kind < 0.85:  # a one-byte header extension whose element is truncated
            out.append(("a", tx.protect(_rtp(seq, payload=payload, extension=b"\xbe\xde\x00\x01\x13\x00\x00\x00"))))
        elif kind < 0.88:
            out.append(("a", other.protect(_rtp(seq, payload=payload, ssrc=SSRC))))  # keyed otherwise
        elif kind < 0.91:
            out.append(("x", tx.protect(_rtp(seq, payload=payload))))  # unknown source
        elif kind < 0.94:
            out.append(("a", b"\x00\x01\x00\x00\x21\x12\xa4\x42" + rng.randbytes(12)))  # STUN
        elif kind < 0.97:
            out.append(("b", bytes([22, 0xFE, 0xFD]) + rng.randbytes(30)))  # DTLS
        else:
            out.append((rng.choice("ab"), rng.randbytes(rng.randint(0, 200))))  # anything
    return out


def _bad_padding(seq: int) -> bytes:
    packet = bytearray(_rtp(seq, payload=b"\x01\x02"))
    packet[0] |= 0x20
    packet[-1] = 200  # more padding than bytes
    return bytes(packet)


def _run(mod, stats_mod, datagrams: list[tuple[str, bytes]], max_datagrams: int, *, burst: int = 3,
         host: str = HOST):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rx = socket.socket(family, socket.SOCK_DGRAM)
    senders = {name: socket.socket(family, socket.SOCK_DGRAM) for name in "abx"}
    try:
        rx.bind((host, 0))
        rx.setblocking(False)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for s in senders.values():
            s.bind((host, 0))
        names = {s.getsockname()[:2]: name for name, s in senders.items()}
        receiver = mod.MuxReceiver(max_datagrams, 2048)
        spare = receiver.new_slot()
        slot = receiver.new_slot()
        assert receiver.bind(host, senders["a"].getsockname()[1], slot)
        assert receiver.bind(host, senders["b"].getsockname()[1], slot)
        assert receiver.bind(host, senders["x"].getsockname()[1], spare)
        receiver.free_slot(spare)  # x's binding goes with it
        assert receiver.bound(host, senders["x"].getsockname()[1]) is None
        stats = stats_mod.StreamStats(48000)
        pushed: list[tuple[int, bytes]] = []
        receiver.arm(slot, _session(pylibsrtp.Policy.SSRC_ANY_INBOUND), [PT], SSRC, stats,
                     lambda seq, payload: pushed.append((seq, payload)))
        back, counts = [], [0, 0, 0, 0]
        for start in range(0, len(datagrams), burst):  # a batch or more per burst
            for name, data in datagrams[start:start + burst]:
                senders[name].sendto(data, rx.getsockname())
            step = 0
            while True:
                got = receiver.recv(rx, 100.0 + start, 1000.0 + start * 0.02)
                if not receiver.received:
                    break
                back += [(data, names[addr[:2]]) for data, addr in got]
                step += 1
                if step == 2:
                    receiver.pause(slot)
                elif step == 3:
                    receiver.resume(slot)
            counts = [c + d for c, d in zip(counts, receiver.take_counts(slot), strict=True)]
        last = receiver.last_rx(host, senders["a"].getsockname()[1])
        return (pushed, back, counts, (stats.packets_received, stats.max_seq, stats.cycles, stats.jitter), last,
                receiver.take_counts(slot))
    finally:
        rx.close()
        for s in senders.values():
            s.close()


def test_the_compiled_one_is_an_extension() -> None:
    assert udpbatch.__file__.endswith(".so")


@FAMILIES
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("max_datagrams", "burst"), [(1, 3), (2, 5), (32, 2), (32, 17)])
def test_compiled_equals_twin(seed: int, max_datagrams: int, burst: int, host: str) -> None:
    datagrams = _datagrams(random.Random(seed))
    compiled = _run(udpbatch, rtpin, datagrams, max_datagrams, burst=burst, host=host)
    twin = _run(udpbatch_py, rtpin_py, datagrams, max_datagrams, burst=burst, host=host)
    assert compiled == twin
    pushed, back, counts, stats, last, _ = compiled
    # and what they agree on is right: every good audio packet once, nothing else pushed
    assert pushed and counts[0] >= len(pushed)
    if burst < 17:
        assert counts[2] > 0 and counts[3] > 0  # replays / tampered dropped by SRTP, bad RTP by the parser
    assert [d for d, n in back if n == "x"] == [d for n, d in datagrams if n == "x"]  # unknown source: handed back
    assert len({seq for seq, _ in pushed}) == len(pushed)  # the replay window: no packet twice
    assert len(back) + counts[0] == len(datagrams)  # each datagram taken or handed back
    assert last > 0


def test_what_is_pushed_is_the_plain_payload_in_order() -> None:
    tx = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    payloads = [os.urandom(n) for n in (0, 1, 80, 160, 1200)]
    datagrams = [("a", tx.protect(_rtp(seq, payload=p))) for seq, p in enumerate(payloads, 1)]
    for mod, stats_mod in ((udpbatch, rtpin), (udpbatch_py, rtpin_py)):
        pushed, back, counts, stats, _, _ = _run(mod, stats_mod, datagrams, 32, burst=5)
        assert pushed == list(enumerate(payloads, 1)) and back == []
        assert counts == [5, sum(len(d) for _, d in datagrams), 0, 0]
        assert stats[:2] == (5, 5)


def test_srtcp_holds_later_audio_of_its_call_in_the_batch() -> None:
    """An SRTCP datagram goes the Python way; the call's audio after it in the same batch follows it."""
    tx = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    rtcp = tx.protect_rtcp(struct.pack("!BBHI", 0x80, 201, 1, SSRC))
    datagrams = [("a", tx.protect(_rtp(1))), ("a", rtcp), ("a", tx.protect(_rtp(2))), ("b", tx.protect(_rtp(3)))]
    for mod, stats_mod in ((udpbatch, rtpin), (udpbatch_py, rtpin_py)):
        pushed, back, *_ = _run(mod, stats_mod, datagrams, 32, burst=4)
        assert [seq for seq, _ in pushed] == [1]
        assert [data for data, _ in back] == [d for _, d in datagrams[1:]]


def test_arguments_are_checked() -> None:
    for mod, stats_mod in ((udpbatch, rtpin), (udpbatch_py, rtpin_py)):
        receiver = mod.MuxReceiver(4, 2048)
        slot = receiver.new_slot()
        with pytest.raises(KeyError):
            receiver.bind(HOST, 1, slot + 1)
        with pytest.raises(ValueError):
            receiver.bind("not-an-address", 1, slot)
        with pytest.raises(ValueError):
            receiver.bind(HOST, 70000, slot)
        with pytest.raises(TypeError):
            receiver.arm(slot, _session(pylibsrtp.Policy.SSRC_ANY_INBOUND), [PT], SSRC, object(), print)
        with pytest.raises(ValueError):
            receiver.arm(slot, _session(pylibsrtp.Policy.SSRC_ANY_INBOUND), [200], SSRC, stats_mod.StreamStats(8000),
                         print)
        with pytest.raises(ValueError):
            receiver.arm(slot, _session(pylibsrtp.Policy.SSRC_ANY_INBOUND), [PT], 1 << 32, stats_mod.StreamStats(8000),
                         print)
        assert receiver.bind("::1", 5, slot) and receiver.bound("0:0::1", 5) == slot
        receiver.arm(slot, _session(pylibsrtp.Policy.SSRC_ANY_INBOUND), [PT], SSRC, stats_mod.StreamStats(8000), print)
        receiver.pause(slot)
        assert not receiver.taking(slot)
        receiver.arm(slot, _session(pylibsrtp.Policy.SSRC_ANY_INBOUND), [PT], SSRC, stats_mod.StreamStats(8000), print)
        assert receiver.taking(slot)  # arming again resumes
        receiver.free_slot(slot)
        with pytest.raises(KeyError):
            receiver.arm(slot, _session(pylibsrtp.Policy.SSRC_ANY_INBOUND), [PT], SSRC, stats_mod.StreamStats(8000),
                         print)


def test_the_address_table_grows_and_forgets() -> None:
    for mod in (udpbatch, udpbatch_py):
        receiver = mod.MuxReceiver(4, 2048)
        slots = [receiver.new_slot() for _ in range(50)]
        for port in range(1, 3001):
            assert receiver.bind(HOST, port, slots[port % 50])
        assert len(receiver) == 3000
        for port in range(1, 3001, 2):
            receiver.unbind(HOST, port)
        assert len(receiver) == 1500
        assert [receiver.bound(HOST, p) for p in (1, 2, 3, 4)] == [None, slots[2], None, slots[4]]
        receiver.free_slot(slots[2])
        assert receiver.bound(HOST, 2) is None and receiver.bound(HOST, 4) == slots[4]
        assert receiver.new_slot() == slots[2]  # reused
        assert receiver.bind("::1", 4, slots[0]) and receiver.bind("::ffff:127.0.0.1", 4, slots[1])
        assert (receiver.bound(HOST, 4), receiver.bound("::1", 4), receiver.bound("::ffff:127.0.0.1", 4)) == (
            slots[4], slots[0], slots[1])  # one port, three addresses: three entries


def test_pylibsrtp_internals_are_where_the_kernel_expects_them() -> None:
    from relay._fast import srtp

    srtp.check()
    with pytest.raises(TypeError):
        srtp.session_address(object())
