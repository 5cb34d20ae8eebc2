"""relay.media.mux: the worker's one ICE port, with real aiortc devices on 127.0.0.1.

The NAT-rebinding test puts a small UDP NAT between the device and relay; mid-call the NAT gives
the device a new source port, as home routers do after an idle timeout or a reboot.
"""

from __future__ import annotations

import asyncio
import re
import socket

import numpy as np
from aiortc import RTCSessionDescription

from relay.media.clock import MediaClock
from relay.media.metrics import MediaMetrics
from relay.media.mux import IceMux
from tests.media.test_peer import Loopback, connect_device, dominant_hz, wait_for

HOST = "127.0.0.1"


class Nat(asyncio.DatagramProtocol):
    """Device-facing port ``port``; its datagrams leave for relay from an outside port that ``rebind()`` changes."""

    def __init__(self, relay_addr: tuple[str, int]) -> None:
        self.relay_addr = relay_addr
        self.device_addr: tuple[str, int] | None = None
        self.inside: asyncio.DatagramTransport | None = None
        self.outside: asyncio.DatagramTransport | None = None
        self.outside_ports: list[int] = []

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.inside, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))
        await self.rebind()
        return self.inside.get_extra_info("sockname")[1]

    async def rebind(self) -> None:
        old = self.outside
        nat = self

        class Outside(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr) -> None:
                if nat.device_addr is not None and nat.inside is not None:
                    nat.inside.sendto(data, nat.device_addr)

        self.outside, _ = await asyncio.get_running_loop().create_datagram_endpoint(Outside, local_addr=(HOST, 0))
        self.outside_ports.append(self.outside.get_extra_info("sockname")[1])
        if old is not None:
            old.close()  # the old mapping is gone: relay's datagrams to it are lost

    def datagram_received(self, data: bytes, addr) -> None:  # from the device
        self.device_addr = addr
        if self.outside is not None:
            self.outside.sendto(data, self.relay_addr)

    def close(self) -> None:
        for t in (self.inside, self.outside):
            if t is not None:
                t.close()


def _unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def test_nat_rebinding_mid_call_audio_continues() -> None:
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    mux = IceMux(0)
    await mux.open([HOST])
    nat = Nat((HOST, mux.port))
    nat_port = await nat.start()
    device, _, received = await connect_device(label="messages", tone_hz=620.0)
    # relay must reach the device through the NAT only: the device's own candidate points nowhere
    offer = re.sub(r"(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )\d+", rf"\g<1>{_unused_udp_port()}",
                   device.localDescription.sdp)
    relay = Loopback(offer, metrics, clock, mux=mux)
    try:
        answer = await relay.peer.answer(offer)
        assert f" {mux.port} typ host" in answer
        await device.setRemoteDescription(RTCSessionDescription(answer.replace(f" {mux.port} typ host",
                                                                               f" {nat_port} typ host"), "answer"))
        await wait_for(lambda: relay.peer.connected)
        await wait_for(lambda: len(received) >= 60)
        table = mux.tables()[0]
        assert table.rebinds == 0
        await nat.rebind()
        mark = len(received)
        # the device's next consent check from the new port moves the call (up to ~2 consent intervals)
        await wait_for(lambda: table.rebinds == 1, timeout_s=20.0)
        await wait_for(lambda: len(received) >= mark + 150, timeout_s=10.0)
        tail = np.concatenate(received[-50:])
        assert abs(dominant_hz(tail, len(received[-1]) * 50) - 620) < 10  # the echo is back
        assert np.sqrt(np.mean(tail.astype(float) ** 2)) > 1000
        assert device.connectionState == "connected" and relay.peer.pc.connectionState == "connected"
        assert len(nat.outside_ports) == 2 and table.dropped_unknown_source > 0  # media from the new port waited
        # the downlink left through the shared socket's queue (relay._fast.SendQueue: sendmmsg), to the new port
        media = mux._endpoints[HOST].media_queue
        assert media.datagrams_sent >= len(received) and media.send_errors == 0
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()
        nat.close()
        mux.close()
    assert mux.stats()["routes"] == 0


async def test_ufrag_taken_on_the_port_is_redrawn_and_the_port_is_shared(monkeypatch) -> None:
    import aioice.ice

    draw = aioice.ice.random_string
    monkeypatch.setattr(aioice.ice, "random_string", lambda n: "same" if n == 4 else draw(n))  # every ufrag clashes
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    mux = IceMux(0)
    await mux.open([HOST])
    devices, relays = [], []
    try:
        for hz in (300.0, 700.0):
            device, _, received = await connect_device(label="messages", tone_hz=hz)
            relay = Loopback(device.localDescription.sdp, metrics, clock, mux=mux)
            answer = await relay.peer.answer(device.localDescription.sdp)
            await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            devices.append((device, received, hz))
            relays.append(relay)
        ufrags = {re.search(r"a=ice-ufrag:(\S+)", r.peer.pc.localDescription.sdp).group(1) for r in relays}
        assert len(ufrags) == 2 and "same" in ufrags
        ports = {line.split()[5] for r in relays for line in r.peer.pc.localDescription.sdp.splitlines()
                 if " typ host" in line}
        assert ports == {str(mux.port)}
        for relay in relays:
            await wait_for(lambda relay=relay: relay.peer.connected)
        for _device, received, hz in devices:
            await wait_for(lambda received=received: len(received) >= 60)
            tail = np.concatenate(received[-50:])
            assert abs(dominant_hz(tail, len(received[-1]) * 50) - hz) < 10
        assert mux.stats()["routes"] == 2
    finally:
        for device, _, _ in devices:
            await device.close()
            device._reader.cancel()
        for relay in relays:
            await relay.peer.close()
        await clock.stop()
        mux.close()


async def test_a_failing_call_does_not_cost_the_others_their_datagrams() -> None:
    """Datagrams of one batch for two calls: the first call's handler raises, the second still gets its own."""
    from tests.media.test_muxtable import binding_request

    class Owner:
        def __init__(self, fail: bool) -> None:
            self.fail, self.got = fail, []

        def datagram_received(self, data, addr) -> None:
            self.got.append(data)
            if self.fail:
                raise RuntimeError("boom")

    mux = IceMux(0)
    await mux.open([HOST])
    endpoint = mux._endpoints[HOST]
    bad, good = Owner(fail=True), Owner(fail=False)
    endpoint.table.add(b"badd", b"pw-bad", bad)
    endpoint.table.add(b"good", b"pw-good", good)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.sendto(binding_request("badd", "pw-bad"), (HOST, mux.port))
        b.sendto(binding_request("good", "pw-good"), (HOST, mux.port))
        for i in range(5):
            a.sendto(bytes([0x80, 111, 0, i]) + bytes(20), (HOST, mux.port))
            b.sendto(bytes([0x80, 111, 1, i]) + bytes(20), (HOST, mux.port))
        await wait_for(lambda: len(good.got) == 6 and len(bad.got) == 6, timeout_s=5.0)
        assert endpoint.delivery_errors == 6
        assert [d[3] for d in good.got[1:]] == list(range(5))
    finally:
        a.close()
        b.close()
        mux.close()


async def test_open_skips_an_address_it_cannot_bind_but_not_a_taken_port() -> None:
    import errno

    import pytest

    mux = IceMux(0)
    try:
        await mux.open([HOST, "192.0.2.99"])  # TEST-NET-1: on no interface here
        assert list(mux._endpoints) == [HOST] and mux.port > 0
        other = IceMux(mux.port)
        with pytest.raises(OSError) as info:
            await other.open([HOST])
        assert info.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError):
            await IceMux(0).open(["192.0.2.99"])  # nothing bound at all
    finally:
        mux.close()


async def test_a_ufrag_is_reserved_from_the_answer_on_and_freed_with_its_connection() -> None:
    import gc

    import aioice.ice

    mux = IceMux(0)
    await mux.open([HOST])
    try:
        first = aioice.ice.Connection(ice_controlling=False, local_username="abcd")
        second = aioice.ice.Connection(ice_controlling=False, local_username="abcd")
        mux.reserve(first)
        mux.reserve(second)  # both still answering: no route on the port yet
        assert first.local_username == "abcd" and second.local_username != "abcd"
        del first
        gc.collect()
        third = aioice.ice.Connection(ice_controlling=False, local_username="abcd")
        mux.reserve(third)
        assert third.local_username == "abcd"  # freed with the first connection
    finally:
        mux.close()


async def test_datagrams_sent_in_one_loop_iteration_leave_in_one_sendmmsg() -> None:
    mux = IceMux(0)
    await mux.open([HOST])
    endpoint = mux._endpoints[HOST]
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((HOST, 0))
    rx.settimeout(2.0)
    try:
        for i in range(5):  # e.g. one clock tick: a packet for each of five calls
            endpoint.sendto(bytes([0x80, 111, 0, i]), rx.getsockname())
        endpoint.sendto("not bytes", rx.getsockname())  # type: ignore[arg-type]  # a bad one: sent one by one
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [rx.recv(100)[3] for _ in range(5)] == list(range(5))
        assert endpoint.send_errors == 1 and endpoint.send_batches == 0
        for i in range(5):
            endpoint.sendto(bytes([0x80, 111, 1, i]), rx.getsockname())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [rx.recv(100)[3] for _ in range(5)] == list(range(5))
        assert endpoint.send_batches == 1 and endpoint.send_errors == 1
    finally:
        rx.close()
        mux.close()


async def test_uplink_audio_is_taken_in_compiled_code_and_comes_back_intact() -> None:
    """A real aiortc device on the worker's port: its SRTP audio is unprotected, parsed and handed to the
    sink inside the compiled recvmmsg drain (not one datagram through Python routing), and the echo the
    device decodes is its own tone; aiortc's transport counters (liveness, getStats) still see it."""
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    mux = IceMux(0)
    await mux.open([HOST])
    device, _, received = await connect_device(label="messages", tone_hz=480.0)
    relay = Loopback(device.localDescription.sdp, metrics, clock, mux=mux)
    taken = []
    try:
        answer = await relay.peer.answer(device.localDescription.sdp)
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: relay.peer.connected)
        # the pair ICE selected may be on another of the machine's addresses: that address's socket
        endpoint = next(e for e in mux._endpoints.values() if e.table.sizes()[1])
        await wait_for(lambda: len(endpoint._paths) == 1)
        ((slot, path),) = endpoint._paths.items()
        sync = path.sync
        path.sync = lambda counts: (taken.append(counts[0]), sync(counts))
        await wait_for(lambda: endpoint._receiver.taking(slot))
        dtls = relay.peer.pc.getTransceivers()[0].receiver.transport
        start = (metrics.rtp_in_packets, sum(taken), dtls._RTCDtlsTransport__rx_packets)
        await wait_for(lambda: len(received) >= 100)
        await wait_for(lambda: metrics.rtp_in_packets >= start[0] + 50)
        tail = np.concatenate(received[-50:])
        assert abs(dominant_hz(tail, len(received[-1]) * 50) - 480) < 10
        assert np.sqrt(np.mean(tail.astype(float) ** 2)) > 1000
        endpoint._sync()
        compiled = sum(taken) - start[1]
        assert compiled >= 45 and metrics.rtp_in_bad == 0
        # nearly all of them: an audio packet after one of the device's RTCP packets (~1/s) takes Python's way
        assert compiled >= (metrics.rtp_in_packets - start[0]) - 5
        assert dtls._RTCDtlsTransport__rx_packets - start[2] >= compiled
        # a receiver that stops receiving (renegotiated to sendonly) stops the compiled path at the next sync
        receiver = relay.peer.pc.getTransceivers()[0].receiver
        receiver._enabled = False
        endpoint._sync()
        assert not endpoint._receiver.taking(slot)
        mark = metrics.rtp_in_packets
        await asyncio.sleep(0.3)
        assert metrics.rtp_in_packets == mark  # dropped, as aiortc drops them
        receiver._enabled = True  # and once it receives again, the next packet taken re-arms it
        await wait_for(lambda: endpoint._receiver.taking(slot))
        await wait_for(lambda: metrics.rtp_in_packets >= mark + 10)
    finally:
        await device.close()
        device._reader.cancel()
        await relay.peer.close()
        await clock.stop()
        mux.close()
    assert mux.stats()["routes"] == 0
    assert path._fast == []  # the call's slots were freed with its routes: it lets go of them
