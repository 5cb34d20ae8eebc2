"""Firefox ESR (Debian's, headless) calls relay, driven over its built-in WebDriver BiDi (no geckodriver).

The page is relay's own origin (http://127.0.0.1 is a secure context: getUserMedia works); the call's
JavaScript is tests/interop/stacks/firefox_call.js. What Firefox sent and what it received are both
recorded in the browser (MediaRecorder, Ogg/Opus) and decoded here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from .conftest import RATE_HZ, STACKS, Result, assert_call_and_echo, device_headers, loud_windows

pytestmark = pytest.mark.slow

FIREFOX = "firefox-esr"
PREFS = {
    "media.navigator.streams.fake": True,  # a fake microphone (a steady tone)
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,  # host candidates on 127.0.0.1
    "media.peerconnection.ice.obfuscate_host_addresses": False,  # no mDNS names
    "browser.shell.checkDefaultBrowser": False,
    "remote.active-protocols": 1,  # WebDriver BiDi only
}
TONE_MS, RECORD_MS = 1000, 2800


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bidi:
    """The few WebDriver BiDi commands this test needs, over Firefox's --remote-debugging-port."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        cid = next(self._ids)
        await self.ws.send_str(json.dumps({"id": cid, "method": method, "params": params}))
        async with asyncio.timeout(timeout_s):
            while True:
                msg = json.loads((await self.ws.receive()).data)
                if msg.get("id") == cid:
                    if msg.get("type") == "error":
                        raise AssertionError(f"{method}: {msg}")
                    return msg["result"]


def decode_ogg(b64: str) -> np.ndarray:
    """An Ogg/Opus recording -> its first channel as float samples at 48 kHz (no downmix: a stereo
    recording of mono audio, L == R, would come out 3 dB louder from a mono mix)."""
    out: list[np.ndarray] = []
    with av.open(io.BytesIO(base64.b64decode(b64)), format="ogg") as container:
        resampler = av.AudioResampler(format="fltp", rate=RATE_HZ)
        for frame in container.decode(audio=0):
            for f in resampler.resample(frame):
                out.append(f.to_ndarray()[0])
    return np.concatenate(out) if out else np.zeros(0)


async def test_firefox_esr_call(relay, tmp_path: Path) -> None:
    if shutil.which(FIREFOX) is None:
        pytest.fail(f"{FIREFOX} is not installed (scripts/test.sh installs it)")
    profile = Path(tempfile.mkdtemp(dir=tmp_path, prefix="ff-profile-"))
    (profile / "user.js").write_text("".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in PREFS.items()))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        FIREFOX, "--headless", "--no-remote", "--profile", str(profile), "--remote-debugging-port", str(port),
        "about:blank", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as http:
            ws = None
            async with asyncio.timeout(30):
                while ws is None:
                    with contextlib.suppress(aiohttp.ClientError):
                        ws = await http.ws_connect(f"ws://127.0.0.1:{port}/session", max_msg_size=64 << 20)
                    if ws is None:
                        await asyncio.sleep(0.2)
            bidi = Bidi(ws)
            await bidi.call("session.new", {"capabilities": {}})
            context = (await bidi.call("browsingContext.getTree", {}))["contexts"][0]["context"]
            await bidi.call("browsingContext.navigate", {"context": context, "url": relay.base_url + "/",
                                                         "wait": "complete"})
            args = [relay.base_url + "/v1/realtime", device_headers(), TONE_MS, RECORD_MS]
            result = await bidi.call("script.callFunction", {
                "functionDeclaration": (STACKS / "firefox_call.js").read_text(),
                "arguments": [{"type": "string", "value": args[0]},
                              {"type": "object", "value": [[k, {"type": "string", "value": v}]
                                                           for k, v in args[1].items()]},
                              {"type": "number", "value": args[2]}, {"type": "number", "value": args[3]}],
                "target": {"context": context}, "awaitPromise": True,
                "serializationOptions": {"maxObjectDepth": 2}}, timeout_s=60)
            assert result["type"] == "success", result
            report = {k: v["value"] if isinstance(v, dict) and "value" in v else v
                      for k, v in result["result"]["value"]}
            await ws.close()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert report.get("answer_accepted") and report.get("received_ogg"), {k: v for k, v in report.items()
                                                                          if not k.endswith("_ogg")}
    sent = decode_ogg(report.pop("sent_ogg"))
    received = decode_ogg(report.pop("received_ogg"))
    # what Firefox's fake microphone really sent while enabled: its length, level and pitch
    loud = loud_windows(sent)
    n = RATE_HZ // 50
    frames = sent[: len(sent) // n * n].reshape(-1, n)[loud][2:-2]
    report["sent_s"] = float(np.sum(loud)) * 0.02
    report["tone_s"] = TONE_MS / 1000
    report["amplitude"] = float(np.sqrt(np.mean(frames ** 2)) * np.sqrt(2))
    spectrum = np.abs(np.fft.rfft(frames.reshape(-1) * np.hanning(frames.size)))
    report["tone_hz"] = float(np.argmax(spectrum) * RATE_HZ / frames.size)
    assert_call_and_echo(Result(report, received, json.dumps(report)))
