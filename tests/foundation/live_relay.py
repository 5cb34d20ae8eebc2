"""A real ``relay serve`` process on 127.0.0.1 (free port, its own data dir), for CLI and doc tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveRelay:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    env: dict[str, str]  # the environment the server runs with (RELAY_* included)
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workspace_key(self) -> str:
        return (self.data_dir / "workspace-key").read_text().strip()

    def run(self, *args: str, timeout_s: float = 90, **kw) -> subprocess.CompletedProcess:
        """``python -m relay <args>`` with the server's settings (same data dir)."""
        return subprocess.run([sys.executable, "-m", "relay", *args], env=kw.pop("env", self.env),
                              capture_output=True, text=True, timeout=timeout_s, cwd=kw.pop("cwd", ROOT), **kw)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextlib.contextmanager
def live_relay(tmp_path: Path, **settings: str) -> Iterator[LiveRelay]:
    """Start ``relay serve``; yields once ``/healthz`` answers and the console link is printed."""
    port = free_port()
    data_dir = tmp_path / "relay-data"
    env = clean_env()
    env.update({"RELAY_PORT": str(port), "RELAY_DATA_DIR": str(data_dir), "RELAY_LOG_FORMAT": "json",
                "RELAY_ICE_HOST_ADDRESSES": "127.0.0.1", "RELAY_SHUTDOWN_TIMEOUT_S": "1"})
    env.update(settings)
    log_path = tmp_path / "relay-serve.log"
    out_path = tmp_path / "relay-serve.out"
    with open(log_path, "wb") as log_fh, open(out_path, "wb") as out_fh:
        proc = subprocess.Popen([sys.executable, "-m", "relay", "serve"], env=env, stdout=out_fh, stderr=log_fh,
                                cwd=tmp_path)
    relay = LiveRelay(proc, port, data_dir, env, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "relay serve did not answer /healthz: " + log_path.read_text()
            try:
                with urllib.request.urlopen(relay.url + "/healthz", timeout=2) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200 and (env.get("RELAY_CONSOLE_LINK") == "false"
                                               or out_path.read_bytes()):
                        break
            except OSError:
                pass
            time.sleep(0.1)
        yield relay
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
