"""relay._fast.rtpsend: RTP written + SRTP-protected in place + one sendmmsg (compiled) == the twin, on real sockets.

SRTP is deterministic for the same key, SSRC and sequence number, so both implementations, each on a
session of the same key, must put the very same datagrams on the wire; a receiving libsrtp session and
aiortc's RTP parser must read back what was sent.
"""

from __future__ import annotations

import socket

import pylibsrtp
import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp._binding import ffi, lib

from relay._fast import rtpsend, rtpsend_py

IMPLS = pytest.mark.parametrize("mod", [rtpsend, rtpsend_py], ids=["compiled", "python"])
PROTECT = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect")))
KEY = bytes(range(30))
PROFILES = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM)


def _session(direction: int, profile: int = PROFILES[0], ssrc: int | None = None) -> pylibsrtp.Session:
    key = KEY if profile == PROFILES[0] else KEY[:28]
    policy = pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=profile)
    if ssrc is not None:
        policy.ssrc_type, policy.ssrc_value = pylibsrtp.Policy.SSRC_SPECIFIC, ssrc
    return pylibsrtp.Session(policy)


def _protected(mod, profile: int = PROFILES[0], **kw):
    stream = mod.RtpStream(**kw)
    session = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND, profile)
    stream.set_srtp(session, PROTECT, int(ffi.cast("uintptr_t", session._srtp[0])))
    return stream


def _pair() -> tuple[socket.socket, socket.socket]:
    rx, tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx.setblocking(False)
    return rx, tx


def _drain(rx: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(rx.recv(4096))
        except BlockingIOError:
            return out


def test_the_compiled_one_is_an_extension_with_the_twins_api() -> None:
    import relay._fast as fast
    assert rtpsend.__file__.endswith(".so") and rtpsend_py.__file__.endswith(".py")
    assert (fast.RtpStream, fast.SendQueue) == ((rtpsend_py if fast.NO_EXTENSIONS else rtpsend).RtpStream,
                                                (rtpsend_py if fast.NO_EXTENSIONS else rtpsend).SendQueue)
    assert rtpsend.MAX_PACKET_BYTES == rtpsend_py.MAX_PACKET_BYTES
    for cls, names in (("RtpStream", ("set_srtp", "build", "send", "sequence_number", "header_bytes")),
                       ("SendQueue", ("flush", "pending"))):
        for name in names:
            assert hasattr(getattr(rtpsend, cls), name) and hasattr(getattr(rtpsend_py, cls), name), (cls, name)


extensions = st.one_of(
    st.just((0, b"", -1)),
    st.integers(1, 8).flatmap(lambda words: st.tuples(
        st.sampled_from([0xBEDE, 0x1000]), st.binary(min_size=4 * words, max_size=4 * words),
        st.integers(-1, 4 * words - 3))),
)


@settings(max_examples=60, deadline=None)
@given(
    header=st.fixed_dictionaries({
        "payload_type": st.integers(0, 127), "ssrc": st.integers(0, 2**32 - 1),
        "sequence_number": st.integers(0, 65535), "timestamp_origin": st.integers(0, 2**32 - 1),
        "marker": st.integers(0, 1)}),
    extension=extensions,
    packets=st.lists(st.tuples(st.binary(min_size=1, max_size=400), st.integers(0, 2**40),
                               st.integers(0, 2**64 - 1)), min_size=1, max_size=12),
    max_datagrams=st.integers(1, 5),
    profile=st.sampled_from(PROFILES),
)
def test_compiled_and_twin_put_the_same_datagrams_on_the_wire(header, extension, packets, max_datagrams,
                                                              profile) -> None:
    profile_id, value, abs_at = extension
    kw = dict(header, extension_profile=profile_id, extension_value=value, abs_send_time_at=abs_at)
    wire, counters = [], []
    for mod in (rtpsend, rtpsend_py):
        stream = _protected(mod, profile, **kw)
        rx, tx = _pair()
        try:
            flushes = []
            queue = mod.SendQueue(tx, max_datagrams, lambda flushes=flushes: flushes.append(1))
            lengths = [stream.send(queue, payload, pts, rx.getsockname(), ntp) for payload, pts, ntp in packets]
            last_batch = (len(packets) - 1) % max_datagrams + 1
            assert queue.pending == last_batch
            assert queue.flush() == last_batch and queue.pending == 0
            got = _drain(rx)
        finally:
            rx.close()
            tx.close()
        assert [len(d) for d in got] == lengths
        # one batch per max_datagrams (the queue flushed itself when full), on_pending once per batch
        assert queue.batches == len(flushes) == -(-len(packets) // max_datagrams)
        assert queue.datagrams_sent == len(packets) and queue.send_errors == 0
        wire.append(got)
        counters.append((stream.packets_sent, stream.octets_sent, stream.bytes_sent, stream.last_timestamp,
                         stream.last_ntp, stream.sequence_number))
    assert wire[0] == wire[1]
    assert counters[0] == counters[1]
    # the far side: libsrtp unprotects, aiortc parses the header
    inbound = _session(pylibsrtp.Policy.SSRC_ANY_INBOUND, profile)
    for i, (datagram, (payload, pts, ntp)) in enumerate(zip(wire[0], packets, strict=True)):
        plain = inbound.unprotect(datagram)
        if not value:  # aiortc's parser (it also decodes extension elements, so not for random ones)
            packet = RtpPacket.parse(plain)
            assert (packet.payload_type, packet.marker, packet.ssrc, packet.payload) == \
                (header["payload_type"], header["marker"], header["ssrc"], payload)
        assert plain[0] == 0x80 | (0x10 if value else 0)
        assert plain[1] == header["marker"] << 7 | header["payload_type"]
        assert int.from_bytes(plain[2:4], "big") == (header["sequence_number"] + i) & 0xFFFF
        assert int.from_bytes(plain[4:8], "big") == (header["timestamp_origin"] + pts) & 0xFFFFFFFF
        assert int.from_bytes(plain[8:12], "big") == header["ssrc"]
        if value:
            assert plain[12:16] == profile_id.to_bytes(2, "big") + (len(value) // 4).to_bytes(2, "big")
        assert plain[12 + (4 + len(value) if value else 0):] == payload
        if abs_at >= 0:
            assert plain[16 + abs_at:19 + abs_at] == ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
    packets_sent, octets, _, last_ts, last_ntp, _ = counters[0]
    assert (packets_sent, octets) == (len(packets), sum(len(p) for p, _, _ in packets))
    assert last_ts == (header["timestamp_origin"] + packets[-1][1]) & 0xFFFFFFFF and last_ntp == packets[-1][2]


@IMPLS
@settings(max_examples=40, deadline=None)
@given(value=st.binary(min_size=8, max_size=8), abs_at=st.integers(0, 5), ntp=st.integers(0, 2**64 - 1),
       origin=st.integers(0, 2**32 - 1), pts=st.integers(0, 2**33))
def test_unprotected_packets_carry_the_template_and_abs_send_time(mod, value, abs_at, ntp, origin, pts) -> None:
    stream = mod.RtpStream(payload_type=111, ssrc=0xDEADBEEF, sequence_number=7, timestamp_origin=origin,
                           extension_profile=0xBEDE, extension_value=value, abs_send_time_at=abs_at)
    data = stream.build(b"opus", pts, ntp)
    expected_ext = bytearray(value)
    expected_ext[abs_at:abs_at + 3] = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
    assert data == bytes([0x90, 0x80 | 111, 0, 7]) + ((origin + pts) & 0xFFFFFFFF).to_bytes(4, "big") + \
        bytes.fromhex("DEADBEEF") + bytes.fromhex("BEDE0002") + bytes(expected_ext) + b"opus"
    assert stream.header_bytes == 24


@IMPLS
def test_the_wall_clock_is_the_default_ntp_time(mod) -> None:
    import time

    from relay.media.rtp_out import ntp_time
    stream = mod.RtpStream(payload_type=0, ssrc=1, sequence_number=0)
    before = ntp_time(time.time())
    stream.build(b"x", 0)
    after = ntp_time(time.time())
    assert before - (1 << 22) <= stream.last_ntp <= after + (1 << 22)


@IMPLS
def test_bad_input_raises_and_does_not_advance_the_stream(mod) -> None:
    with pytest.raises(ValueError):
        mod.RtpStream(payload_type=128, ssrc=1, sequence_number=0)
    with pytest.raises(ValueError):
        mod.RtpStream(payload_type=0, ssrc=1, sequence_number=0, extension_value=b"abc")
    with pytest.raises(ValueError):
        mod.RtpStream(payload_type=0, ssrc=1, sequence_number=0, extension_value=b"abcd", abs_send_time_at=2)
    with pytest.raises(ValueError):
        mod.SendQueue(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0)
    stream = mod.RtpStream(payload_type=0, ssrc=1, sequence_number=9)
    with pytest.raises(ValueError):
        stream.build(bytes(mod.MAX_PACKET_BYTES - 11), 0)
    with pytest.raises(TypeError):
        stream.build("text", 0)
    with pytest.raises(ValueError):
        stream.set_srtp(None, 0, 0)
    rx, tx = _pair()
    try:
        queue = mod.SendQueue(tx, 4)
        with pytest.raises(ValueError):
            stream.send(queue, b"x", 0, ("example.org", 5000))  # no name resolution on the media path
        with pytest.raises(TypeError):
            stream.send(object(), b"x", 0, rx.getsockname())
        assert queue.pending == 0 and stream.packets_sent == 0 and stream.sequence_number == 9
        assert len(stream.build(bytes(mod.MAX_PACKET_BYTES - 12), 0)) == mod.MAX_PACKET_BYTES
        # a session without a stream for this SSRC: libsrtp refuses, nothing is queued or counted
        other = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND, ssrc=2)
        stream.set_srtp(other, PROTECT, int(ffi.cast("uintptr_t", other._srtp[0])))
        with pytest.raises(RuntimeError, match="srtp_protect"):
            stream.send(queue, b"x", 0, rx.getsockname())
        assert queue.pending == 0 and stream.packets_sent == 1 and stream.sequence_number == 10
    finally:
        rx.close()
        tx.close()


@IMPLS
def test_an_unsendable_datagram_is_skipped_and_the_rest_still_leave(mod) -> None:
    rx, tx = _pair()
    try:
        queue = mod.SendQueue(tx, 8)
        stream = mod.RtpStream(payload_type=0, ssrc=1, sequence_number=0)
        dest = rx.getsockname()
        stream.send(queue, b"a", 0, dest)
        stream.send(queue, b"b", 0, ("::1", dest[1]))  # IPv6 on an IPv4 socket: EAFNOSUPPORT
        stream.send(queue, b"c", 0, dest)
        assert queue.flush() == 2
        assert [d[12:] for d in _drain(rx)] == [b"a", b"c"]
        assert queue.send_errors == 1 and queue.last_errno != 0 and queue.datagrams_sent == 2
        assert queue.flush() == 0 and queue.batches == 1
    finally:
        rx.close()
        tx.close()
