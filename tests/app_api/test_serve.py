"""The app API in a real `relay serve` process (uvloop, spawned TTS workers), set up with `relay admin`:
the README's curl flow, then a clean SIGTERM exit with the worker processes gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.app_api.helpers import decode
from tests.conftest import create_database, free_port


def _admin(env: dict[str, str], *argv: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "relay", "admin", "--json", *argv], env=env, capture_output=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


def _request(url: str, headers: dict[str, str], body: dict | None = None) -> tuple[int, bytes, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={**headers, **({"Content-Type": "application/json"}
                                                                        if data else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_app_api_in_relay_serve(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update({"RELAY_PORT": str(port), "RELAY_DATA_DIR": str(tmp_path / "data"), "RELAY_LOG_FORMAT": "json",
                "RELAY_SHUTDOWN_TIMEOUT_S": "3"})
    create_database(tmp_path / "data")  # what the first `relay serve` does; admin commands never create one
    ws = _admin(env, "workspaces", "create", "Family", "--with-key")
    client = _admin(env, "clients", "create", "--workspace", ws["id"])
    voice = _admin(env, "voices", "create", "--workspace", ws["id"], "--name", "Narrator",
                   "--design-prompt", "calm bedtime voice")
    _admin(env, "stories", "create", "--workspace", ws["id"], "--name", "Fox", "--slug", "fox",
           "--transcript", "Once upon a time there was a fox. The end.")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen([sys.executable, "-m", "relay", "serve"], env=env, stdout=log_fh,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    headers = {"X-Workspace-Key": ws["key"], "X-Client-Id": client["id"], "X-Client-Secret": "q" * 48,
               "X-App-Source": "serve-test"}
    children: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if _request(base + "/readyz", {})[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        status, body, _ = _request(f"{base}/v1/app/text-to-speech/{voice['voice_id']}/with-timestamps", headers,
                                   {"text": "Hello from relay.", "output_format": "mp3_44100_128"})
        assert status == 200, body
        tts = json.loads(body)
        assert [t["word"] for t in tts["timestamps"]] == ["Hello", "from", "relay"]
        status, audio, hdrs = _request(tts["audio_url"], {})
        assert status == 200 and hdrs["Content-Type"] == "audio/mpeg" and decode(audio)[0] == "mp3"
        status, wav, hdrs = _request(f"{base}/v1/app/stories/fox/read", headers, {})
        assert status == 200 and hdrs["Content-Type"] == "audio/wav" and int(hdrs["Content-Length"]) == len(wav)
        status, body, _ = _request(f"{base}/v1/app/stories/nope", headers)
        assert status == 404 and json.loads(body) == {"detail": {"error": "Story not found",
                                                                  "code": "STORY_NOT_FOUND"}}
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children  # the spawned TTS worker (and multiprocessing's helper)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()
    log = log_path.read_text()
    assert headers["X-Client-Secret"] not in log and ws["key"] not in log  # secrets never logged
    assert "sig=" not in log  # signed URLs (credentials) are not logged
    # the spawned TTS workers ended with the server
    time.sleep(0.5)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert alive == []
