"""Relays the bench starts itself (for --spawn/--compare): started, awaited, ended by their own PID."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    label: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    nice: int = 0  # scheduling priority for the server (negative: ahead of other work; needs root)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 30.0) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix=f"bench-{self.label}-", suffix=".log")
        env = {**os.environ, **self.env}
        # Popen returns at once (fork/exec); readiness is awaited below without blocking the loop
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            self.cmd,
            env=env,
            stdout=fd,
            stderr=fd,
            stdin=subprocess.DEVNULL,
        )
        os.close(fd)
        if self.nice:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, self.nice)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; log: {self.tail()}")
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                await w.wait_closed()
                return
            except OSError:
                await asyncio.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.label} did not listen on {self.port} within {timeout_s} s; log: {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM our own process (by PID), SIGKILL it if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def default_relay_cmd() -> list[str]:
    """``python -m relay serve``; falls back to ``python -m bench.run_relay`` while relay has no CLI."""
    import importlib.util

    if importlib.util.find_spec("relay.__main__") is not None:
        return [sys.executable, "-m", "relay", "serve"]
    return [sys.executable, "-m", "bench.run_relay"]


def assistant_server(*, port: int | None = None) -> Server:
    """relay's local assistant as its own process: the simulated model provider both relays talk to."""
    port = port or free_port()
    return Server("assistant", [sys.executable, "-m", "relay.assistant", "--port", str(port)], port)


def relay_server(
    *,
    model: str,
    data_dir: str,
    upstream_url: str = "",
    cmd: list[str] | None = None,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """relay on loopback: demo mode on, ICE on 127.0.0.1, default assistant = ``upstream_url`` with ``model``.

    With ``upstream_url`` (the bench's local-assistant process) relay talks to it as an
    OpenAI-compatible beta upstream; without it relay starts its built-in assistant itself.
    """
    port = port or free_port()
    env = {
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_DATA_DIR": data_dir,
        "RELAY_DEMO_MODE": "true",
        "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1",
        "RELAY_UPSTREAM_MODEL": model,
        "RELAY_LOG_LEVEL": "warning",
    }
    if upstream_url:
        env.update(
            {
                "RELAY_UPSTREAM_URL": upstream_url,
                "RELAY_UPSTREAM_PROVIDER": "compatible",
                "RELAY_UPSTREAM_DIALECT": "beta",
            }
        )
    env.update(extra_env or {})
    return Server("relay", cmd or default_relay_cmd(), port, env)


def reference_server(*, upstream: str, model: str, port: int | None = None) -> Server:
    port = port or free_port()
    cmd = [sys.executable, "-m", "bench.reference", "--port", str(port), "--upstream", upstream, "--model", model]
    return Server("reference", cmd, port)
