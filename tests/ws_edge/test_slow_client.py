"""A client that stops reading (docs/ws_edge.md, "Limits"): past ``ws_send_backlog_bytes`` relay ends
the call with ``client_too_slow``: the close frame (1008) is sent, or, for a client that still does
not read, the transport is aborted; relay's socket is gone, nothing counts as a 500, the end reason
is counted, and the memory comes back. The client is a raw TCP socket with a small receive buffer
that feeds audio at 10x real time to the built-in assistant's loopback mode (every appended chunk
comes straight back as an audio delta) and never reads."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
import socket
import struct

import orjson
import pytest

from tests.ops.promtext import parse

from .conftest import ADMIN, silence

pytestmark = pytest.mark.slow
CHUNK_MS = 100
FEED_EVERY_S = CHUNK_MS / 1000 / 10  # 10x real time
BACKLOG_BYTES = 2 << 20
BOUND_S = 20.0  # a safety net against hangs; the assertions are on states, not on time


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def server_side_state(server_port: int, client_port: int) -> str | None:
    """The TCP state of relay's end of the connection (``/proc/net/tcp``), None when it is gone."""
    want = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == want:
                return {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
                        "08": "CLOSE_WAIT", "0B": "CLOSING"}.get(fields[3], fields[3])
    return None


def frame(text: str) -> bytes:
    """A masked client text frame (RFC 6455)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = b"\x81" + (bytes([0x80 | n]) if n < 126 else
                      bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else
                      bytes([0x80 | 127]) + struct.pack("!Q", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the complete server frames in ``data`` (unmasked)."""
    out, i = [], 0
    while i + 2 <= len(data):
        op, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        if i + n > len(data):
            break
        out.append((op, data[i:i + n]))
        i += n
    return out


class NeverReader:
    """A raw WebSocket client on a non-blocking socket with a 16 KiB receive buffer."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.port, self.token = port, token

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(self.sock, (
            f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(self.sock, 1)  # byte by byte: read nothing past the handshake
        assert head.startswith(b"HTTP/1.1 101"), head

    async def feed(self, stop: asyncio.Event) -> None:
        """Appends 100 ms of audio every 10 ms until ``stop`` or the connection breaks."""
        loop = asyncio.get_running_loop()
        chunk = frame(orjson.dumps({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(silence(CHUNK_MS) + b"\x01\x00").decode()}).decode())
        while not stop.is_set():
            try:
                await asyncio.wait_for(loop.sock_sendall(self.sock, chunk), 1.0)
            except (OSError, TimeoutError):
                return
            await asyncio.sleep(FEED_EVERY_S)

    async def read_all(self) -> tuple[bytes, str]:
        """Everything relay left for it, and how the stream ended (``eof`` or ``reset``)."""
        loop = asyncio.get_running_loop()
        data = bytearray()
        while True:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), BOUND_S)
            except ConnectionResetError:
                return bytes(data), "reset"
            if not chunk:
                return bytes(data), "eof"
            data += chunk

    def close(self) -> None:
        self.sock.close()


async def _slow_call(edge_factory):
    edge = await edge_factory(ws_send_backlog_bytes=BACKLOG_BYTES)
    assistant = await edge.assistant(name="Loop", model="relay-loopback")
    token = await edge.token(assistant_id=assistant["id"])
    return edge, token


async def _metrics(edge) -> dict:
    async with edge.http.get(edge.url("/metrics"), headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200
        return parse(await resp.text())


async def _run_until_too_slow(edge, client: NeverReader) -> None:
    stop = asyncio.Event()
    feeder = asyncio.create_task(client.feed(stop))
    try:
        async with asyncio.timeout(BOUND_S):
            while not (any(c.end_reason == "client_too_slow" for c in edge.plane.registry.calls())
                       or edge.plane.metrics.calls_ended_by_reason.get("client_too_slow")):
                assert not feeder.done(), "the connection broke before relay declared the client too slow"
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await feeder


async def test_a_client_that_never_reads_is_cut_off_and_nothing_is_left(edge_factory) -> None:
    edge, token = await _slow_call(edge_factory)
    gc.collect()
    rss_before = rss_bytes()
    client = NeverReader(edge.server.port, token)
    try:
        await client.open()
        await _run_until_too_slow(edge, client)
        # relay gives up on its own: the call and relay's socket are gone while the client still reads nothing
        await edge.wait_idle(BOUND_S)
        client_port = client.sock.getsockname()[1]
        async with asyncio.timeout(BOUND_S):
            while server_side_state(edge.server.port, client_port) is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        data, ending = await client.read_all()  # what reached the client before relay let go
    finally:
        client.close()
    assert ending == "reset"  # aborted: nothing kept for it in relay or in the kernel
    fams = await _metrics(edge)
    assert fams["relay_calls_ended_total"].value(reason="client_too_slow") == 1
    assert fams["relay_http_requests_total"].value(status="500") == 0
    assert fams["relay_live_calls"].value() == 0
    gc.collect()
    assert rss_bytes() - rss_before < 5 << 20


async def test_a_client_that_reads_again_gets_close_1008(edge_factory) -> None:
    edge, token = await _slow_call(edge_factory)
    client = NeverReader(edge.server.port, token)
    try:
        await client.open()
        await _run_until_too_slow(edge, client)
        data, _ending = await client.read_all()  # it reads again right away: the close frame is there
    finally:
        client.close()
    frames = frames_of(data)
    assert frames[-1][0] == 0x8, [op for op, _ in frames[-3:]]
    code = struct.unpack("!H", frames[-1][1][:2])[0]
    assert code == 1008 and frames[-1][1][2:] == b"client_too_slow"
    await edge.wait_idle(BOUND_S)
    fams = await _metrics(edge)
    assert fams["relay_http_requests_total"].value(status="500") == 0
