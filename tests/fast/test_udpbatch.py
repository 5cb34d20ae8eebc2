"""relay._fast.udpbatch: recvmmsg/sendmmsg batches (compiled) == recvfrom/sendto loops (twin), on real sockets."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import udpbatch, udpbatch_py

IMPLS = pytest.mark.parametrize("mod", [udpbatch, udpbatch_py], ids=["compiled", "python"])


def test_the_compiled_one_is_an_extension() -> None:
    assert udpbatch.__file__.endswith(".so") and udpbatch_py.__file__.endswith(".py")


def _pair(family: int = socket.AF_INET) -> tuple[socket.socket, socket.socket]:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    rx, tx = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family, socket.SOCK_DGRAM)
    rx.bind((host, 0))
    tx.bind((host, 0))
    rx.setblocking(False)
    tx.setblocking(False)
    return rx, tx


def _exchange(mod, payloads: list[bytes], *, max_datagrams: int, max_bytes: int, family: int = socket.AF_INET):
    """Send ``payloads`` with ``mod.send_batch``, receive them with ``mod.BatchReceiver``: (sent, batches)."""
    rx, tx = _pair(family)
    try:
        dest = rx.getsockname()
        sent = mod.send_batch(tx, [(p, dest) for p in payloads])
        receiver = mod.BatchReceiver(max_datagrams, max_bytes)
        batches = []
        while True:
            got = receiver.recv(rx)
            if not got:
                break
            batches.append(got)
        return sent, batches, tx.getsockname()
    finally:
        rx.close()
        tx.close()


@settings(max_examples=40, deadline=None)
@given(payloads=st.lists(st.binary(min_size=0, max_size=300), max_size=40),
       max_datagrams=st.integers(1, 16), max_bytes=st.integers(1, 400))
def test_compiled_equals_twin(payloads, max_datagrams, max_bytes) -> None:
    results = []
    for mod in (udpbatch, udpbatch_py):
        sent, batches, source = _exchange(mod, payloads, max_datagrams=max_datagrams, max_bytes=max_bytes)
        flat = [(data, addr == source[:2]) for batch in batches for data, addr in batch]
        results.append((sent, [len(b) for b in batches], flat))
        # what arrived: every datagram, in order, truncated to max_bytes, from the sender's address
        assert sent == len(payloads)
        assert flat == [(p[:max_bytes], True) for p in payloads]
        assert all(len(b) <= max_datagrams for b in batches)
    assert results[0] == results[1]


@IMPLS
def test_ipv6_addresses_match_recvfrom(mod) -> None:
    sent, batches, source = _exchange(mod, [b"a", b"bc"], max_datagrams=8, max_bytes=64, family=socket.AF_INET6)
    assert sent == 2 and [d for d, _ in batches[0]] == [b"a", b"bc"]
    host, port, flowinfo, scope_id = batches[0][0][1]
    assert (host, port) == source[:2] and (flowinfo, scope_id) == (0, 0)


@IMPLS
def test_nothing_waiting_is_an_empty_batch_and_bad_sizes_are_refused(mod) -> None:
    rx, tx = _pair()
    try:
        assert mod.BatchReceiver().recv(rx) == []
        assert mod.send_batch(tx, []) == 0
    finally:
        rx.close()
        tx.close()
    for bad in ((0, 10), (10, 0), (5000, 10), (10, 70000)):
        with pytest.raises(ValueError):
            mod.BatchReceiver(*bad)


@IMPLS
def test_a_closed_socket_raises(mod) -> None:
    rx, tx = _pair()
    rx.close()
    with pytest.raises(OSError):
        mod.BatchReceiver().recv(rx)
    tx.close()
    with pytest.raises(OSError):
        mod.send_batch(tx, [(b"x", ("127.0.0.1", 9))])


@IMPLS
def test_a_host_name_is_refused_before_anything_is_sent(mod) -> None:
    rx, tx = _pair()
    try:
        dest = rx.getsockname()
        with pytest.raises(ValueError, match="not an IP address"):
            mod.send_batch(tx, [(b"x", dest), (b"y", ("localhost", dest[1]))])
        with pytest.raises(TypeError):
            mod.send_batch(tx, [("text", dest)])
        assert mod.BatchReceiver().recv(rx) == []
    finally:
        rx.close()
        tx.close()
