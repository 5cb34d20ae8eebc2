"""Devices with 3072- and 4096-bit RSA certificates: their DTLS flights are longer than one 1500-byte
datagram. Why stock aiortc never completes such a handshake (it cuts the flight inside a record), the
whole-record packing relay's own transports use (``relay.media.compat.dtls.send_whole_records``), and
aiortc devices that send whole records calling relay on the worker's one ICE port and on a port of
their own, judged by the audio the device decoded (relay echoes the device's tone back).
"""

from __future__ import annotations

import asyncio
import functools
import select
import socket

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate, generate_certificate
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from relay._fast import MuxReceiver
from relay.call.metrics import MediaMetrics
from relay.media import dtls
from relay.media import mux as mux_module
from relay.media.clock import MediaClock
from relay.media.compat import dtls as compat_dtls
from relay.media.mux import IceMux

from .test_dtls_roles import OPENSSL_DEFAULT, RSA_SUITES, DeviceCertificate
from .test_peer import Loopback, Tone, dominant_hz, wait_for

HOST = "127.0.0.1"


@functools.cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


def records(datagram: bytes) -> list[int]:
    """The lengths of the whole DTLS records ``datagram`` holds; AssertionError if one is cut or it
    does not start with a record."""
    lengths, i = [], 0
    while i < len(datagram):
        assert 20 <= datagram[i] <= 25 and datagram[i + 1:i + 3] in (b"\xfe\xff", b"\xfe\xfd"), datagram[i:i + 3]  # DTLS 1.0, 1.2
        n = 13 + int.from_bytes(datagram[i + 11:i + 13], "big")
        assert i + n <= len(datagram), f"a record of {n} bytes cut at {len(datagram) - i}"
        lengths.append(n)
        i += n
    return lengths


def server_flight(bits: int) -> bytes:
    """What OpenSSL (through a memory BIO, as in aiortc) writes as a DTLS server with an RSA key of
    ``bits`` in answer to a ClientHello: ServerHello, Certificate, ServerKeyExchange, CertificateRequest,
    ServerHelloDone."""
    def context(key) -> SSL.Context:
        ctx = RTCCertificate(key=key, cert=generate_certificate(key))._create_ssl_context(SRTP_PROFILES)
        ctx.set_cipher_list(b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
        return ctx

    server = SSL.Connection(context(rsa_key(bits)))
    server.set_accept_state()
    client = SSL.Connection(context(ec.generate_private_key(ec.SECP256R1())))
    client.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    server.bio_write(client.bio_read(65536))
    with pytest.raises(SSL.WantReadError):
        server.do_handshake()
    return server.bio_read(65536)


@pytest.mark.parametrize("bits", [3072, 4096])
def test_a_large_rsa_flight_is_cut_inside_a_record_by_1500_byte_reads_and_not_by_whole_record_packing(bits):
    flight = server_flight(bits)
    assert len(flight) > 1500
    assert sum(records(flight)) == len(flight)  # OpenSSL writes whole records back to back
    # aiortc's _write_ssl: bio_read(1500) per datagram
    stock = [flight[i:i + 1500] for i in range(0, len(flight), 1500)]
    with pytest.raises(AssertionError, match="cut"):
        records(stock[0])
    with pytest.raises(AssertionError):
        records(stock[1])  # the rest starts mid-record: the receiver drops it too
    packed = compat_dtls.whole_record_datagrams(flight)
    assert b"".join(packed) == flight and len(packed) >= 2
    for datagram in packed:
        assert len(datagram) <= compat_dtls.DTLS_MTU_BYTES
        records(datagram)


def test_whole_record_packing() -> None:
    def record(n: int, kind: int = 22) -> bytes:
        return bytes([kind, 0xFE, 0xFD]) + bytes(8) + n.to_bytes(2, "big") + bytes([kind]) * n

    small, medium, big = record(100), record(500), record(1500)  # 113, 513, 1513 bytes
    pack = compat_dtls.whole_record_datagrams
    assert pack(b"") == []
    assert pack(small) == [small]
    assert pack(small + medium + medium, 1200) == [small + medium + medium]  # 1139 bytes
    assert pack(medium + medium + medium, 1200) == [medium + medium, medium]
    # a record longer than the MTU cannot be split: it goes alone, its neighbours in their own datagrams
    assert pack(small + big + small, 1200) == [small, big, small]
    # bytes that are no whole record (OpenSSL never writes them) are sent as they are, after the rest
    assert pack(small + medium[:40], 1200) == [small, medium[:40]]
    assert pack(b"\x16\xfe", 1200) == [b"\x16\xfe"]


def test_the_ice_ports_receiver_takes_a_large_datagram_whole() -> None:
    """A stack that sends a large flight as one datagram (mbedtls without an MTU set, OpenSSL on a
    datagram BIO over loopback's 64 KiB MTU) is not cut on the worker's ICE port: its receiver is made
    with ``RECV_MAX_BYTES`` (the largest UDP payload), so a 4 KiB DTLS datagram arrives whole."""
    flight = server_flight(4096)
    big = (flight * 2)[:4000]
    assert mux_module.RECV_MAX_BYTES >= 65507  # the largest IPv4 UDP payload
    receiver = MuxReceiver(mux_module.RECV_BATCH, mux_module.RECV_MAX_BYTES)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind((HOST, 0))
        tx.bind((HOST, 0))
        source = tx.getsockname()
        tx.sendto(flight, rx.getsockname())
        tx.sendto(big, rx.getsockname())
        got: list = []
        for _ in range(200):
            got += receiver.recv(rx, 0.0, 0.0)
            if len(got) == 2:
                break
            select.select([rx], [], [], 0.05)
    assert got == [(flight, source), (big, source)]


ONE_DATAGRAM = 65535  # the device's MTU: its whole flight in one datagram (mbedtls with no MTU set)

# mode, bits, device_role, the device's MTU: each size in each mode, the device as the DTLS server and
# as the client, in datagrams of at most 1200 bytes (browsers, Pion); and the whole 4096-bit flight in
# one datagram of over 2 KB, in each mode
CASES = [("mux", 3072, "server", 1200), ("mux", 4096, "client", 1200), ("port per call", 3072, "client", 1200),
         ("port per call", 4096, "server", 1200), ("mux", 4096, "server", ONE_DATAGRAM),
         ("port per call", 4096, "server", ONE_DATAGRAM)]


@pytest.mark.parametrize(("mode", "bits", "device_role", "device_mtu"), CASES)
async def test_a_large_rsa_device_connects_and_hears_relay(mode: str, bits: int, device_role: str,
                                                           device_mtu: int) -> None:
    metrics = MediaMetrics()
    clock = MediaClock(metrics)
    clock.start()
    dtls.configure(3600)
    mux = None
    if mode == "mux":
        mux = IceMux(0)
        await mux.open([HOST])
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    cert = DeviceCertificate(rsa_key(bits), RSA_SUITES if device_role == "server" else OPENSSL_DEFAULT)
    device._RTCPeerConnection__certificates = [cert]  # before any transport is created
    device.addTrack(Tone(530.0))
    received: list[np.ndarray] = []

    @device.on("track")
    def on_track(track) -> None:
        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                received.append(frame.to_ndarray().reshape(-1)[::len(frame.layout.channels)])
        device._reader = asyncio.ensure_future(read())

    channel = device.createDataChannel("oai-events")
    await device.setLocalDescription(await device.createOffer())
    device_dtls = device.getTransceivers()[0].receiver.transport
    compat_dtls.send_whole_records(device_dtls, device_mtu)  # whole records, as other DTLS stacks send them
    sent: list[bytes] = []
    ice_send = device_dtls.transport._send

    async def send(data: bytes) -> None:
        sent.append(data)
        await ice_send(data)

    device_dtls.transport._send = send
    offer = device.localDescription.sdp
    if device_role == "client":
        offer = offer.replace("a=setup:actpass", "a=setup:active")
    relay = Loopback(offer, metrics, clock, mux=mux)
    try:
        answer = await relay.peer.answer(offer)
        relay_ice = relay.peer.pc.getTransceivers()[0].receiver.transport.transport
        relay_sent: list[bytes] = []
        relay_ice_send = relay_ice._send

        async def relay_send(data: bytes) -> None:
            relay_sent.append(data)
            await relay_ice_send(data)

        relay_ice._send = relay_send
        if mux is not None:
            assert f" {mux.port} typ host" in answer
        await device.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_for(lambda: channel.readyState == "open" or relay.closed_reasons, timeout_s=15.0)
        assert channel.readyState == "open", relay.closed_reasons
        assert device_dtls._role == device_role and device_dtls.state == "connected"
        peer_key = device_dtls._ssl.get_peer_certificate(as_cryptography=True).public_key()
        assert isinstance(peer_key, ec.EllipticCurvePublicKey)  # relay's own certificate
        # the device's flight with its certificate did not fit one datagram: several, all of whole records
        handshake = [d for d in sent if 19 < d[0] < 64]
        if device_mtu == ONE_DATAGRAM:
            assert max(len(d) for d in handshake) > 2048  # the flight with the certificate, whole
        else:
            assert sum(len(d) for d in handshake) > 1500 and max(len(d) for d in handshake) <= device_mtu
        relay_handshake = [d for d in relay_sent if 19 < d[0] < 64]
        assert relay_handshake
        for datagram in handshake + relay_handshake:  # relay's own flights too
            records(datagram)
        await wait_for(lambda: len(received) >= 60)
        tail = np.concatenate(received[-40:])
        assert abs(dominant_hz(tail, len(received[-1]) * 50) - 530) < 10  # the device's tone, echoed by relay
        assert np.sqrt(np.mean(tail.astype(float) ** 2)) > 1000
        assert relay.closed_reasons == []
    finally:
        await device.close()
        reader = getattr(device, "_reader", None)
        if reader is not None:
            reader.cancel()
        await relay.peer.close()
        await clock.stop()
        if mux is not None:
            mux.close()
