"""``relay serve --workers N``: one port, N worker processes, calls handed to a sibling when full,
a crashed worker restarted and counted, SIGTERM draining every worker; as real processes with real
calls from the device SDK (``relay.client``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from relay.client import RelayClient, RelayError
from relay.node.metrics import merge
from relay.node.state import NodeState, choose_sibling, port_slice
from relay.settings import SettingsError, worker_count
from tests.ops.promtext import parse

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "node-admin-token-" + "n" * 24


# --- sans-I/O: the policy -------------------------------------------------------


def test_port_range_splits_into_disjoint_slices_covering_it() -> None:
    slices = [port_slice(40000, 40100, i, 3) for i in range(3)]
    assert slices == [(40000, 40033), (40034, 40067), (40068, 40100)]
    assert port_slice(0, 0, 1, 2) is None
    assert port_slice(5000, 5001, 1, 2) == (5001, 5001)
    with pytest.raises(ValueError, match="fewer than the 3 workers"):
        port_slice(5000, 5001, 0, 3)


def test_worker_count_setting() -> None:
    assert worker_count("auto", cores=6) == 6
    assert worker_count("3") == 3 and worker_count(" AUTO ", cores=1) == 1
    for bad in ("0", "-2", "many", "1000"):
        with pytest.raises(SettingsError, match="workers"):
            worker_count(bad)


def test_node_state_ready_and_sibling_choice() -> None:
    node = NodeState.create(2)
    assert node.ready() == (False, "starting")
    a, b = node.worker(0), node.worker(1)
    a.started(2)
    b.started(2)
    assert node.ready() == (True, "")
    a.set_load(2)
    assert choose_sibling(2, 2, a.siblings()) == 1  # full here, room there
    b.set_load(2)
    assert node.ready() == (False, "full") and choose_sibling(2, 2, a.siblings()) is None
    b.set_load(0)
    a.set_load(1)
    assert choose_sibling(1, 2, a.siblings()) is None  # within the balance margin: answered here
    b.set_draining()
    assert choose_sibling(2, 2, a.siblings()) is None  # a draining sibling takes nothing
    node.set_draining()
    assert node.ready() == (False, "draining")
    node.count_restart()
    assert node.restarts == 1


def test_metrics_of_the_workers_merge_into_one_valid_exposition() -> None:
    one = ('# HELP relay_live_calls Live calls\n# TYPE relay_live_calls gauge\nrelay_live_calls 2\n'
           '# HELP relay_calls_ended_total Ended\n# TYPE relay_calls_ended_total counter\n'
           'relay_calls_ended_total{reason="hangup"} 3\n')
    two = one.replace("relay_live_calls 2", "relay_live_calls 5").replace("} 3", "} 4")
    families = parse(merge([(0, one), (1, two)], workers=2, restarts=1))
    assert families["relay_live_calls"].by("worker") == {"0": 2, "1": 5}
    assert families["relay_calls_ended_total"].value(worker="1", reason="hangup") == 4
    assert families["relay_worker_restarts_total"].value() == 1
    assert families["relay_node_workers"].value() == 2


# --- real processes ---------------------------------------------------------------

pytestmark_slow = pytest.mark.slow


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "XDG_"))}
    env.update({"PYTHONPATH": str(ROOT), "RELAY_LOG_FORMAT": "text", "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1",
                "RELAY_SHUTDOWN_TIMEOUT_S": "3", "RELAY_DEMO_MODE": "true", "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
                "RELAY_PORT": "0", "RELAY_DATA_DIR": str(tmp / "data"), "HOME": str(tmp)})
    env.update(extra)
    return env


class Node:
    """``relay serve --workers N`` in the background; ``base`` once its console link is printed."""

    def __init__(self, tmp: Path, workers: int, env: dict[str, str]) -> None:
        self.out, self.err = tmp / "serve.out", tmp / "serve.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "relay", "serve", "--workers", str(workers)],
                                         env=env, cwd=tmp, stdout=out, stderr=err)
        deadline = time.monotonic() + 90
        while "Console: " not in self.out.read_text():
            assert self.proc.poll() is None, self.err.read_text()
            assert time.monotonic() < deadline, self.err.read_text()
            time.sleep(0.1)
        self.base = self.out.read_text().split("Console: ", 1)[1].split("/#", 1)[0]

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as resp:  # noqa: S310 (loopback)
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def metrics(self) -> dict:
        req = urllib.request.Request(self.base + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            return parse(resp.read().decode())

    def workers(self) -> list[int]:
        text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return sorted(int(p) for p in text.split())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


async def _session_on_full_worker(node: Node):
    """An HTTP client whose one keep-alive connection is held by a worker that is full (it answered
    ``/v1/realtime/stats`` with live_calls == max_calls), so that its next request lands there."""
    import aiohttp

    for _ in range(20):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, force_close=False))
        async with session.get(node.base + "/v1/realtime/stats",
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            stats = await resp.json()
        if stats["live_calls"] >= stats["max_calls"]:
            return session
        await session.close()
    raise AssertionError("no connection reached the full worker")


def _device(base: str) -> RelayClient:
    return RelayClient(base, "dev-" + uuid.uuid4().hex[:12], demo=True, host_addresses=["127.0.0.1"])


def _answer_port(answer: str) -> int:
    match = re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer)
    assert match, answer
    return int(match.group(1))


async def _until(pred, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_full_worker_hands_the_call_to_its_sibling_and_readyz_reports_the_node(tmp_path: Path) -> None:
    base_port = 42000 + os.getpid() % 2000 * 8
    # the ICE mux (the default): worker i carries every call of its own on UDP base_port + i
    node = Node(tmp_path, 2, _env(tmp_path, RELAY_MAX_CALLS="1", RELAY_METRICS_TOKEN="",
                                  RELAY_ICE_UDP_PORT=str(base_port)))
    slices = [(base_port + i, base_port + i) for i in range(2)]
    devices: list[RelayClient] = []
    http = None
    try:
        assert await asyncio.to_thread(node.status, "/readyz") == 200
        first = _device(node.base)
        devices.append(first)
        await first.connect()
        # the next offer reaches the worker that holds the first call, which is full: it hands it over
        http = await _session_on_full_worker(node)
        second = RelayClient(node.base, "dev-" + uuid.uuid4().hex[:12], demo=True, host_addresses=["127.0.0.1"],
                             http_session=http)
        devices.append(second)
        await second.connect()
        assert sum(node.metrics()["relay_calls_handed_off_total"].by("worker").values()) == 1
        held = {next(i for i, (lo, hi) in enumerate(slices) if lo <= _answer_port(d.answer_sdp) <= hi)
                for d in devices}
        assert held == {0, 1}  # one call on each worker's own UDP port
        # every worker full: the node is not ready, whichever worker answers, and a third call is refused
        assert {await asyncio.to_thread(node.status, "/readyz") for _ in range(6)} == {503}
        third = _device(node.base)
        with pytest.raises(RelayError) as refused:
            await third.connect()
        await third.hangup()
        assert refused.value.status == 503 and refused.value.code == "capacity_exceeded"
        await devices.pop().hangup()
        await _until(lambda: node.status("/readyz") == 200)
        again = _device(node.base)
        devices.append(again)
        await again.connect()  # the freed worker takes it, whichever worker accepted the connection
    finally:
        for d in devices:
            await d.hangup()
        if http is not None:
            await http.close()
        assert node.stop() == 0


@pytest.mark.slow
async def test_crashed_worker_is_restarted_counted_and_sigterm_drains_every_worker(tmp_path: Path) -> None:
    node = Node(tmp_path, 2, _env(tmp_path, RELAY_MAX_CALLS="1", RELAY_METRICS_TOKEN=""))
    devices: list[RelayClient] = []
    try:
        before = node.workers()
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        await _until(lambda: len(node.workers()) == 2 and node.workers() != before)
        assert re.search(rf"worker \d \(pid {before[0]}\) exited with code -9; restarting", node.err.read_text())
        await _until(lambda: node.err.read_text().count(" ready (pid ") == 3)  # 2 at start, 1 restarted
        for _ in range(2):  # a call in each worker, the restarted one included
            device = _device(node.base)
            devices.append(device)
            await device.connect()
        # the node's metrics, whichever worker is scraped: both workers' series, labelled, and the restart
        for _ in range(3):
            families = await asyncio.to_thread(node.metrics)
            assert families["relay_worker_restarts_total"].value() == 1
            assert families["relay_live_calls"].by("worker") == {"0": 1, "1": 1}
            assert set(families["process_cpu_seconds_total"].by("worker")) == {"0", "1"}
            setup = families["relay_call_setup_seconds"]  # one histogram per worker, each valid (parse checks)
            assert {lab["worker"] for n, lab, _v in setup.samples if n.endswith("_count")} == {"0", "1"}
        # SIGTERM: no new calls; both live calls are ended by the drain, and their usage is written
        node.proc.send_signal(signal.SIGTERM)
        await _until(lambda: all(d.pc is None or d.pc.connectionState in ("closed", "failed", "disconnected")
                                 or d.channel is None or d.channel.readyState != "open" for d in devices),
                     timeout_s=40)
        assert await asyncio.to_thread(node.proc.wait, 40) == 0
    finally:
        for d in devices:
            await d.hangup()
        node.stop()
    with sqlite3.connect(tmp_path / "data" / "relay.db") as db:
        ids = {row[0] for row in db.execute("SELECT client_id FROM usage")}
    assert {d.client_id for d in devices} <= ids


def test_the_callers_address_comes_from_a_sibling_only_over_the_private_socket(tmp_path: Path) -> None:
    from unittest import mock

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from relay.settings import load_settings
    from relay.web import keys
    from relay.web.middleware import remote_address

    app = web.Application()
    app[keys.SETTINGS] = load_settings(environ={}, data_dir=str(tmp_path))
    app[keys.WORKER] = NodeState.create(2).worker(0)

    def request(sockname: object) -> web.Request:
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: {
            "sockname": sockname, "peername": ("203.0.113.9", 5000)}.get(name, default)
        return make_mocked_request("POST", "/v1/realtime", headers={"X-Relay-Remote": "198.51.100.1"},
                                   app=app, transport=transport)

    assert remote_address(request(str(tmp_path / "w0.sock"))) == "198.51.100.1"  # handed over by a sibling
    assert remote_address(request(("127.0.0.1", 8080))) == "203.0.113.9"  # from the network: header ignored


@pytest.mark.slow
async def test_full_worker_hands_a_websocket_call_to_its_sibling(tmp_path: Path) -> None:
    import aiohttp

    node = Node(tmp_path, 2, _env(tmp_path, RELAY_MAX_CALLS="1"))
    try:
        token = (await asyncio.to_thread(_admin_post, node, "/admin/v1/tokens", {"name": "server"}))["token"]
        url = node.base.replace("http://", "ws://") + "/v1/realtime"
        async with aiohttp.ClientSession() as http:
            open_ws = [await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})]
            assert (await open_ws[0].receive_json(timeout=15))["type"] == "session.created"
            # the next upgrade reaches the full worker (over its keep-alive connection): it hands the call over
            on_full = await asyncio.to_thread(_socket_on_full_worker, node)
            import websockets

            handed = await websockets.connect(url, sock=on_full, additional_headers={"Authorization": f"Bearer {token}"})
            assert json.loads(await asyncio.wait_for(handed.recv(), 15))["type"] == "session.created"
            assert sum(node.metrics()["relay_calls_handed_off_total"].by("worker").values()) == 1
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # every worker full
                await http.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
            assert refused.value.status == 503
            families = await asyncio.to_thread(node.metrics)
            assert families["relay_live_calls"].by("worker") == {"0": 1, "1": 1}
            # events flow both ways through the handed-over call
            await handed.send(json.dumps({"type": "session.update", "session": {"instructions": "Be brief."}}))
            async with asyncio.timeout(15):
                while json.loads(await handed.recv())["type"] != "session.updated":
                    pass
            await open_ws[0].close()
            await _until(lambda: sum(node.metrics()["relay_live_calls"].by("worker").values()) == 1)
            # the drain ends the handed-over call with its close code, relayed through the first worker
            node.proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(30):
                    while True:
                        await handed.recv()
            assert handed.close_code == aiohttp.WSCloseCode.GOING_AWAY  # relayed from the sibling
    finally:
        assert node.stop() == 0


def _socket_on_full_worker(node: Node) -> socket.socket:
    """A TCP connection held by a worker that is full (its /v1/realtime/stats says so, over the same
    keep-alive connection), so that the WebSocket upgrade sent on it next lands there."""
    host, port = node.base.removeprefix("http://").split(":")
    for _ in range(30):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(f"GET /v1/realtime/stats HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}"
                     "\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        header, _, body = head.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", header).group(1))
        while len(body) < length:
            body += sock.recv(4096)
        stats = json.loads(body)
        if stats["live_calls"] >= stats["max_calls"]:
            sock.settimeout(None)
            return sock
        sock.close()
    raise AssertionError("no connection reached the full worker")


def _admin_post(node: Node, path: str, body: dict) -> dict:
    req = urllib.request.Request(node.base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
        return json.loads(resp.read())


def test_workers_starting_at_once_share_one_signing_key(tmp_path: Path) -> None:
    """The URL-signing key file is created whole by one of several processes and read by the others."""
    from concurrent.futures import ProcessPoolExecutor

    from relay.files.signing import load_signing_key

    with ProcessPoolExecutor(4) as pool:
        keys = list(pool.map(load_signing_key, [""] * 16, [tmp_path] * 16))
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["url_signing.key"]  # no temporary file left
