"""TURN REST credentials (coturn ``use-auth-secret``) checked against a real coturn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice import stun

from relay.settings import load_settings
from relay.turn import ice_servers, turn_credential, turn_username
from tests.conftest import free_port

REALM = "relay.test"
SECRET_NEW = "rotated-secret-" + secrets.token_hex(8)
SECRET_OLD = "previous-secret-" + secrets.token_hex(8)


class TurnServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.addr = ("127.0.0.1", port)


class StunSocket:
    """One UDP socket (coturn binds its nonce to the client's address and port)."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> StunSocket:
        queue = self._queue

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, _addr: tuple[str, int]) -> None:
                if not queue.full():
                    queue.put_nowait(data)

        self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Proto, remote_addr=self.addr)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._transport is not None
        self._transport.close()

    async def transact(self, message: stun.Message, timeout_s: float = 2.0) -> stun.Message:
        assert self._transport is not None
        for _attempt in range(3):
            self._transport.sendto(bytes(message))
            try:
                while True:
                    answer = stun.parse_message(await asyncio.wait_for(self._queue.get(), timeout_s))
                    if answer.transaction_id == message.transaction_id:
                        return answer
            except TimeoutError:
                continue
        raise TimeoutError("no answer from the TURN server")


async def _transact(addr: tuple[str, int], message: stun.Message, timeout_s: float = 2.0) -> stun.Message:
    async with StunSocket(addr) as sock:
        return await sock.transact(message, timeout_s)


async def allocate(addr: tuple[str, int], username: str, password: str) -> stun.Message:
    """A TURN Allocate (RFC 5766) with long-term credentials; returns the final answer."""
    async with StunSocket(addr) as sock:
        first = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
        first.attributes["REQUESTED-TRANSPORT"] = 0x11000000  # UDP
        challenge = await sock.transact(first)
        assert challenge.message_class == stun.Class.ERROR and challenge.attributes["ERROR-CODE"][0] == 401
        request = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = username
        request.attributes["REALM"] = challenge.attributes["REALM"]
        request.attributes["NONCE"] = challenge.attributes["NONCE"]
        request.attributes["REQUESTED-TRANSPORT"] = 0x11000000
        realm = challenge.attributes["REALM"]
        key = hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()  # RFC 5389 long-term key
        request.add_message_integrity(key)
        return await sock.transact(request)


@pytest.fixture(scope="module")
def coturn() -> Iterator[TurnServer]:
    """coturn on 127.0.0.1 with use-auth-secret and two static secrets (rotation)."""
    binary = shutil.which("turnserver") or "/usr/bin/turnserver"
    root = Path(tempfile.mkdtemp(prefix="relay-coturn-"))
    port = free_port()
    relay_min = 49152 + (port % 1000) * 10
    cmd = [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
           f"--min-port={relay_min}", f"--max-port={relay_min + 9}", "--use-auth-secret",
           f"--static-auth-secret={SECRET_NEW}", f"--static-auth-secret={SECRET_OLD}", f"--realm={REALM}",
           "--no-tls", "--no-dtls", "--no-cli", "--log-file=stdout", "--simple-log", "--no-stun-backward-compatibility",
           f"--pidfile={root / 'turnserver.pid'}", f"--userdb={root / 'turndb'}", "--allow-loopback-peers"]
    log_path = root / "turnserver.log"
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, cwd=root)
    server = TurnServer(port)
    try:
        deadline = time.monotonic() + 20
        while True:  # ready when it answers a STUN Binding
            if proc.poll() is not None:
                raise RuntimeError(f"turnserver exited: {log_path.read_text()[-2000:]}")
            try:
                binding = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
                asyncio.run(_transact(server.addr, binding, timeout_s=0.3))
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _creds(secret: str, *, ttl_s: int = 600, now: float | None = None, client_id: str = "dev-1") -> tuple[str, str]:
    user = turn_username(client_id, now=time.time() if now is None else now, ttl_s=ttl_s)
    return user, turn_credential(secret, user)


async def test_issued_credentials_allocate(coturn: TurnServer) -> None:
    settings = load_settings(environ={}, turn_secret=[SECRET_NEW, SECRET_OLD], turn_ttl_s=600,
                             turn_urls=[f"turn:127.0.0.1:{coturn.port}?transport=udp"])
    (entry,) = ice_servers(settings, "6f1c7e0e-58a2-4c1c-9d77-0c4a1b1a2b3c", now=time.time())
    answer = await allocate(coturn.addr, entry["username"], entry["credential"])
    assert answer.message_class == stun.Class.RESPONSE, answer.attributes.get("ERROR-CODE")
    relayed_ip, relayed_port = answer.attributes["XOR-RELAYED-ADDRESS"]
    assert relayed_ip == "127.0.0.1" and relayed_port > 0


async def test_expired_credentials_refused(coturn: TurnServer) -> None:
    user, cred = _creds(SECRET_NEW, ttl_s=60, now=time.time() - 3600)
    answer = await allocate(coturn.addr, user, cred)
    assert answer.message_class == stun.Class.ERROR and answer.attributes["ERROR-CODE"][0] == 401


async def test_tampered_credentials_refused(coturn: TurnServer) -> None:
    user, cred = _creds(SECRET_NEW)
    expiry, client = user.split(":", 1)
    forged_user = f"{int(expiry) + 86400}:{client}"  # longer life, same credential
    answer = await allocate(coturn.addr, forged_user, cred)
    assert answer.message_class == stun.Class.ERROR and answer.attributes["ERROR-CODE"][0] == 401
    answer = await allocate(coturn.addr, user, turn_credential("not-the-secret", user))
    assert answer.message_class == stun.Class.ERROR and answer.attributes["ERROR-CODE"][0] == 401


async def test_rotated_secret_accepted(coturn: TurnServer) -> None:
    """Credentials signed with the previous secret still work while coturn knows both."""
    user, cred = _creds(SECRET_OLD, client_id="dev-2")
    answer = await allocate(coturn.addr, user, cred)
    assert answer.message_class == stun.Class.RESPONSE, answer.attributes.get("ERROR-CODE")


def test_no_turn_configured() -> None:
    assert ice_servers(load_settings(environ={}), "c", now=0) == []
    stun_only = load_settings(environ={}, stun_urls=["stun:127.0.0.1:3478"], turn_urls=["turn:127.0.0.1:3478"])
    assert ice_servers(stun_only, "c", now=0) == [{"urls": ["stun:127.0.0.1:3478"]}]  # TURN URIs but no secret
    both = load_settings(environ={}, turn_urls=["turn:a:3478", "turns:a:443?transport=tcp"], turn_secret=["s1", "s2"],
                         turn_ttl_s=100)
    (turn,) = ice_servers(both, "c:1", now=1000.5)
    assert turn["username"] == "1100:c_1" and turn["urls"] == ["turn:a:3478", "turns:a:443?transport=tcp"]
    assert turn["credential"] == turn_credential("s1", "1100:c_1")
