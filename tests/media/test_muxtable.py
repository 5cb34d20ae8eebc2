"""relay.media.muxtable: routing the worker's one ICE port (sans-I/O, real STUN messages from aioice)."""

from __future__ import annotations

import os
import tracemalloc

from aioice import stun

from relay.media import muxtable
from relay.media.muxtable import MuxTable, request_ufrag

A = ("192.0.2.1", 5000)
B = ("192.0.2.2", 6000)
A2 = ("192.0.2.1", 5999)  # A after its NAT rebound
SRTP = bytes([0x80, 111]) + bytes(30)
DTLS = bytes([22, 0xFE, 0xFD]) + bytes(20)


def binding_request(ufrag: str, password: str | None, remote: str = "dev1", *, use_candidate: bool = False) -> bytes:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    msg.attributes["USERNAME"] = f"{ufrag}:{remote}"
    msg.attributes["PRIORITY"] = 1234
    msg.attributes["ICE-CONTROLLING"] = 1
    if use_candidate:
        msg.attributes["USE-CANDIDATE"] = None
    if password is not None:
        msg.add_message_integrity(password.encode())
    msg.add_fingerprint()
    return bytes(msg)


def response_to(request: bytes) -> bytes:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                       transaction_id=request[8:20])
    msg.attributes["XOR-MAPPED-ADDRESS"] = ("10.0.0.1", 1)
    return bytes(msg)


def table_with_two_calls() -> tuple[MuxTable, object, object]:
    table = MuxTable()
    one = table.add(b"aaaa", b"pw-one-0123456789abcdef", "call-1")
    two = table.add(b"bbbb", b"pw-two-0123456789abcdef", "call-2")
    return table, one, two


def test_request_ufrag_reads_username_wherever_it_is() -> None:
    assert request_ufrag(binding_request("abcd", "pw")) == b"abcd"
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    msg.attributes["PRIORITY"] = 1
    msg.attributes["ICE-CONTROLLED"] = 7
    msg.attributes["USERNAME"] = "zz9x:remote"
    assert request_ufrag(bytes(msg)) == b"zz9x"
    no_user = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    assert request_ufrag(bytes(no_user)) is None
    truncated = bytearray(binding_request("abcd", "pw"))[:26]
    assert request_ufrag(bytes(truncated)) is None


def test_requests_route_by_ufrag_then_media_by_the_bound_address() -> None:
    table, one, two = table_with_two_calls()
    assert table.classify(binding_request("aaaa", "pw-one-0123456789abcdef"), A, 0.0) == (one, A)
    assert table.classify(binding_request("bbbb", "pw-two-0123456789abcdef"), B, 0.0) == (two, B)
    assert table.classify(SRTP, A, 0.1) == (one, A)
    assert table.classify(DTLS, B, 0.1) == (two, B)
    assert table.sizes() == (2, 2, 0)


def test_an_address_is_bound_only_after_a_valid_integrity_check() -> None:
    table, one, _ = table_with_two_calls()
    assert table.classify(binding_request("aaaa", "wrong-password"), A, 0.0) is None
    assert table.classify(binding_request("aaaa", None), A, 0.0) is None  # no MESSAGE-INTEGRITY at all
    assert table.dropped_bad_integrity == 2
    assert table.classify(SRTP, A, 0.0) is None  # still unknown
    assert table.sizes()[1] == 0
    # a valid check for another call's ufrag from an address bound to call 1 takes the address over
    assert table.classify(binding_request("aaaa", "pw-one-0123456789abcdef"), A, 0.0) == (one, A)
    two = table.classify(binding_request("bbbb", "pw-two-0123456789abcdef"), A, 0.0)[0]
    assert two is not one and table.classify(SRTP, A, 0.0)[0] is two
    # a forged check (bad integrity) for call 1 does not take it back
    assert table.classify(binding_request("aaaa", "forged"), A, 0.0) is None
    assert table.classify(SRTP, A, 0.0)[0] is two


def test_unknown_sources_and_ufrags_are_dropped_and_kept_nowhere() -> None:
    table, _, _ = table_with_two_calls()
    assert table.classify(SRTP, ("198.51.100.7", 1), 0.0) is None
    assert table.classify(binding_request("zzzz", "pw"), ("198.51.100.7", 1), 0.0) is None
    assert table.classify(response_to(binding_request("aaaa", "x")), A, 0.0) is None  # no such transaction
    assert (table.dropped_unknown_source, table.dropped_unknown_ufrag, table.dropped_unknown_transaction) == (1, 1, 1)
    assert table.sizes() == (2, 0, 0)


def test_a_flood_of_unknown_ufrags_allocates_nothing_that_stays() -> None:
    table, _, _ = table_with_two_calls()
    requests = [binding_request(os.urandom(3).hex()[:4], "pw") for _ in range(200)]
    sources = [("198.51.100.7", 1000 + i) for i in range(200)]
    for data, addr in zip(requests, sources, strict=True):  # warm up
        table.classify(data, addr, 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(50):
            for data, addr in zip(requests, sources, strict=True):
                assert table.classify(data, addr, 0.0) is None
                assert table.classify(SRTP, addr, 0.0) is None
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if "muxtable" in str(s.traceback))
    # 20000 datagrams: anything kept per datagram would be >= 20000 x 33 bytes; the drop counters
    # (ints) may have become new objects
    assert grown < 256, grown
    assert table.sizes() == (2, 0, 0)
    assert table.dropped_unknown_ufrag == 200 * 51


def test_responses_to_our_checks_route_by_transaction_id() -> None:
    table, one, two = table_with_two_calls()
    check = binding_request("dev1", "device-pw", remote="aaaa")  # what call 1's aioice sends to the device
    assert table.on_send(one, check, B, 0.0) == B
    assert table.sizes()[2] == 1
    assert table.classify(response_to(check), B, 0.1) == (one, B)  # B is not even bound
    assert table.classify(response_to(check), B, 0.2) is None  # answered once; a late duplicate is dropped
    assert table.sizes()[2] == 0


def test_transactions_are_bounded(monkeypatch) -> None:
    monkeypatch.setattr(muxtable, "MAX_TRANSACTIONS", 4)
    table, one, _ = table_with_two_calls()
    checks = [binding_request("dev1", "pw", remote="aaaa") for _ in range(6)]
    for check in checks:
        table.on_send(one, check, B, 0.0)
    assert table.sizes()[2] == 4
    assert table.classify(response_to(checks[0]), B, 0.0) is None  # the oldest went
    assert table.classify(response_to(checks[-1]), B, 0.0)[0] is one


def test_removing_a_route_forgets_its_ufrag_addresses_and_transactions() -> None:
    table, one, two = table_with_two_calls()
    table.classify(binding_request("aaaa", "pw-one-0123456789abcdef"), A, 0.0)
    table.on_send(one, binding_request("dev1", "pw", remote="aaaa"), A, 0.0)
    table.remove(one)
    assert table.sizes() == (1, 0, 0)
    assert table.classify(SRTP, A, 0.0) is None
    assert table.classify(binding_request("aaaa", "pw-one-0123456789abcdef"), A, 0.0) is None
    table.add(b"aaaa", b"new", "call-3")  # the ufrag is free again


def test_nat_rebinding_moves_the_call_below_ice_once_the_old_path_is_silent() -> None:
    table, one, _ = table_with_two_calls()
    pw = "pw-one-0123456789abcdef"
    table.classify(binding_request("aaaa", pw), A, 0.0)
    assert table.on_send(one, SRTP, A, 0.0) == A  # media flows: A is the selected address
    table.classify(SRTP, A, 1.0)
    # a valid check from elsewhere while A is alive (another candidate of the device): no move
    assert table.classify(binding_request("aaaa", pw), A2, 1.5) == (one, A2)
    assert table.on_send(one, SRTP, A, 1.5) == A and table.rebinds == 0
    # the device's NAT rebinds: A goes silent, its media from A2 is not bound yet ...
    assert table.classify(SRTP, ("192.0.2.1", 7777), 2.0) is None
    # ... until a valid consent check arrives from the new address after the silence
    assert table.classify(binding_request("aaaa", "forged"), ("192.0.2.1", 7777), 4.0) is None
    new = ("192.0.2.1", 7777)
    assert table.classify(binding_request("aaaa", pw), new, 4.0) == (one, A)  # ICE still sees A
    assert table.rebinds == 1
    assert table.on_send(one, SRTP, A, 4.0) == new  # ICE sends to A: it goes to the new address
    assert table.classify(SRTP, new, 4.1) == (one, A)
    check = binding_request("dev1", "device-pw", remote="aaaa")
    assert table.on_send(one, check, A, 4.2) == new  # consent checks follow too ...
    assert table.classify(response_to(check), new, 4.3) == (one, A)  # ... and their answers look like A's


def test_ufrags_are_unique_per_table() -> None:
    table = MuxTable()
    table.add(b"aaaa", b"x", "call-1")
    try:
        table.add(b"aaaa", b"y", "call-2")
    except KeyError:
        pass
    else:
        raise AssertionError("a second route with the same ufrag")
    assert len(table) == 1
