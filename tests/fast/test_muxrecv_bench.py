"""Microbenchmark: one readiness callback of the worker's ICE port draining 32 SRTP audio datagrams of 32 calls.

``python``: what the port did before the compiled path (and still does for every datagram it does not
take): ``recvmmsg`` into (bytes, address) pairs, ``MuxTable.classify`` per datagram, the call's
``datagram_received`` hook, then the direct receive path's work (pylibsrtp unprotect, ``parse_rtp``,
``StreamStats.update``, the sink call) -- a lower bound of it (the real hook also checks aiortc state).
``compiled``: ``MuxReceiver.recv``, the slots armed. The sink is an empty function in both. The
datagrams are sent before each round (not timed). Collected as ordinary tests (pyproject sets
``--benchmark-disable``: each body runs once and its assertions hold). Numbers, as in docs/media.md::

    pytest tests/fast/test_muxrecv_bench.py --benchmark-enable --benchmark-only -q
"""

from __future__ import annotations

import socket
import struct
import time

import pylibsrtp
import pytest

from relay._fast import MuxReceiver, StreamStats, parse_rtp
from relay.media.muxtable import MuxTable
from tests.media.test_muxtable import binding_request

CALLS = 32
ROUNDS = 200
PT = 111


def _policy(direction: int, key: bytes) -> pylibsrtp.Policy:
    return pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)


class _Calls:
    """CALLS device sockets, each with its SRTP keys; ``batch(round)``: one audio datagram of each."""

    def __init__(self) -> None:
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.devices = []
        for i in range(CALLS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            key = bytes([i]) * 30
            tx = pylibsrtp.Session(_policy(pylibsrtp.Policy.SSRC_ANY_OUTBOUND, key))
            self.devices.append((sock, key, tx, 1000 + i))
        payload = bytes(range(80))
        self.rounds = [[struct.pack("!BBHII", 0x80, PT, r, 960 * r, ssrc) for (*_, ssrc) in self.devices]
                       for r in range(ROUNDS + 2)]
        self.rounds = [[tx.protect(h + payload) for h, (_, _, tx, _) in zip(hs, self.devices, strict=True)]
                       for hs in self.rounds]
        self.next = 0

    def rx_session(self, i: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(_policy(pylibsrtp.Policy.SSRC_ANY_INBOUND, self.devices[i][1]))

    def send_round(self) -> None:
        dest = self.rx.getsockname()
        for (sock, *_), data in zip(self.devices, self.rounds[self.next], strict=True):
            sock.sendto(data, dest)
        self.next += 1

    def close(self) -> None:
        self.rx.close()
        for sock, *_ in self.devices:
            sock.close()


def _python_port(calls: _Calls, pushed: list):
    table = MuxTable(verify=lambda data, password: True)
    from relay._fast import BatchReceiver

    receiver = BatchReceiver(32, 65535)
    for i, (sock, *_) in enumerate(calls.devices):
        session, stats = calls.rx_session(i), StreamStats(48000)

        class Owner:
            def datagram_received(self, data, addr, session=session, stats=stats):
                if data and 127 < data[0] < 192:  # the direct path's hook and take(), minus aiortc's state
                    b1 = data[1]
                    if len(data) >= 12 and not 191 < b1 < 209 and (b1 & 0x7F) == PT:
                        plain = session.unprotect(data)
                        _pt, _m, seq, ts, _ssrc, payload = parse_rtp(plain)
                        stats.update(seq, ts, time.time())
                        pushed.append(payload)

        route = table.add(f"u{i:03d}".encode(), b"pw", Owner())
        table.classify(binding_request(f"u{i:03d}", "pw"), sock.getsockname(), 0.0)
        assert table._by_addr[sock.getsockname()] is route

    def drain() -> None:
        classify, now = table.classify, 1.0
        for data, addr in receiver.recv(calls.rx):
            if len(addr) > 2:
                addr = (addr[0], addr[1])
            hit = classify(data, addr, now)
            if hit is not None:
                hit[0].owner.datagram_received(data, hit[1])

    return drain


def _compiled_port(calls: _Calls, pushed: list):
    receiver = MuxReceiver(32, 65535)

    def push(seq, payload):
        pushed.append(payload)

    for i, (sock, _, _, ssrc) in enumerate(calls.devices):
        slot = receiver.new_slot()
        receiver.bind(*sock.getsockname(), slot)
        receiver.arm(slot, calls.rx_session(i), [PT], ssrc, StreamStats(48000), push)

    def drain() -> None:
        assert receiver.recv(calls.rx, 1.0, time.time()) == []

    return drain


@pytest.mark.parametrize("port", [_python_port, _compiled_port], ids=["python", "compiled"])
def test_port_drain_cost(benchmark, port) -> None:
    benchmark.group = f"ICE port: one recvmmsg of {CALLS} calls' SRTP audio, socket -> sink"
    calls = _Calls()
    pushed: list[bytes] = []
    try:
        drain = port(calls, pushed)
        benchmark.pedantic(drain, setup=calls.send_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        assert len(pushed) == CALLS * calls.next and set(pushed) == {bytes(range(80))}
    finally:
        calls.close()
