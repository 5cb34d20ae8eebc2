"""Interop fixtures: a real relay app on 127.0.0.1 (its built-in echo assistant) and foreign WebRTC
stacks run as subprocesses that call it like devices do (ICE on 127.0.0.1, no STUN).

Each stack writes ``<out>.json`` (answer accepted, DTLS state, data channel open) and ``<out>.pcm``
(48 kHz mono s16le: what it decoded from relay). The echo check is on that decoded audio.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relay.client.codec import encode_pcm16_to_opus
from relay.media.opus import OpusDecoder
from tests.e2e.conftest import Relay, relay_factory  # noqa: F401 (fixture re-export)

STACKS = Path(__file__).parent / "stacks"
NODE_CACHE = Path(os.environ.get("RELAY_INTEROP_CACHE", Path.home() / ".cache" / "relay-interop"))
RATE_HZ = 48000


def device_headers() -> dict[str, str]:
    return {"X-Client-Id": str(uuid.uuid4()), "X-Client-Secret": uuid.uuid4().hex + uuid.uuid4().hex,
            "X-Demo-Mode": "true"}


@dataclass
class Result:
    report: dict[str, Any]
    pcm: np.ndarray  # float, full scale 1.0
    output: str


async def run_stack(argv: list[str], out: Path, timeout_s: float = 45.0, env: dict[str, str] | None = None) -> Result:
    """Run one stack's device script to its end; its report and decoded audio."""
    if shutil.which(argv[0]) is None:  # a name on PATH or an executable path
        pytest.fail(f"{argv[0]} is not installed (scripts/test.sh installs the interop stacks)")
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    reader = asyncio.ensure_future(proc.stdout.read())
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"{argv[:2]} did not finish within {timeout_s:.0f} s:\n"
                    f"{(await reader).decode(errors='replace')[-3000:]}")
    text = (await reader).decode(errors="replace")
    report_path = out.with_suffix(".json")
    assert report_path.exists(), f"the stack wrote no report (exit {proc.returncode}):\n{text[-3000:]}"
    report = json.loads(report_path.read_text())
    raw = out.with_suffix(".pcm").read_bytes() if out.with_suffix(".pcm").exists() else b""
    pcm = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(float) / 32768.0
    return Result(report, pcm, text)


TONE_AT_S, TONE_S, SIGNAL_S, AMPLITUDE = 0.2, 1.0, 4.0, 0.25


def write_packets(path: Path) -> dict[str, float]:
    """The device's uplink for stacks without an Opus encoder of their own: 20 ms Opus packets of
    ``SIGNAL_S`` with a 440 Hz tone of ``TONE_S`` at ``TONE_AT_S`` (2-byte length + payload each)."""
    n = int(SIGNAL_S * RATE_HZ)
    signal = np.zeros(n)
    i, k = int(TONE_AT_S * RATE_HZ), int(TONE_S * RATE_HZ)
    signal[i:i + k] = AMPLITUDE * 32767 * np.sin(2 * np.pi * 440 * np.arange(k) / RATE_HZ)
    packets = encode_pcm16_to_opus(signal.astype(np.int16), RATE_HZ)
    path.write_bytes(b"".join(struct.pack(">H", len(p)) + p for p in packets))
    return {"tone_s": TONE_S, "amplitude": AMPLITUDE}


def decode_rtp(path: Path) -> np.ndarray:
    """What a stack recorded (2-byte seq + 2-byte length + Opus payload each), decoded in sequence
    order at 48 kHz; a missing sequence number is 20 ms of silence."""
    raw = path.read_bytes() if path.exists() else b""
    packets: dict[int, bytes] = {}
    i = 0
    first = None
    while i + 4 <= len(raw):
        seq, size = struct.unpack_from(">HH", raw, i)
        if first is None:
            first = seq
        packets[(seq - first) & 0xFFFF] = raw[i + 4:i + 4 + size]
        i += 4 + size
    decoder = OpusDecoder(RATE_HZ)
    out: list[bytes] = []
    for idx in range(max(packets) + 1 if packets else 0):
        payload = packets.get(idx)
        out.append(decoder.decode(payload) if payload else bytes(960 * 2))
    pcm = np.frombuffer(b"".join(out), dtype="<i2")
    return pcm.astype(float) / 32768.0


async def run_node_stack(script: str, relay: Relay, tmp_path: Path) -> Result:
    """One Node device script (werift, node-datachannel) calling ``relay``."""
    modules = NODE_CACHE / "node_modules"
    if not (modules / "werift").exists() or not (modules / "node-datachannel").exists():
        pytest.fail(f"werift / node-datachannel are not installed in {modules} (scripts/test.sh installs them)")
    out = tmp_path / script.split(".")[0]
    sent = write_packets(tmp_path / "uplink.opus")
    env = {**os.environ, "NODE_PATH": str(modules)}
    result = await run_stack(["node", str(STACKS / script), relay.base_url + "/v1/realtime",
                              json.dumps(device_headers()), str(out), str(tmp_path / "uplink.opus")], out, env=env)
    result.report.update(sent)
    result.pcm = decode_rtp(out.with_suffix(".rtp"))
    return result


GO_SOURCES = Path("/usr/share/gocode/src")  # Debian's Go source packages (golang-github-pion-webrtc.v3-dev)


def _prepare_gopath(gopath: Path, source: Path, work: Path) -> None:
    """Symlink every Debian Go module whose path ends in /vN, and copy the device's source in."""
    for go_mod in GO_SOURCES.rglob("go.mod"):
        if "testdata" in go_mod.parts:
            continue
        module = next((line.split()[1] for line in go_mod.read_text(errors="replace").splitlines()
                       if line.startswith("module ")), None)
        directory = go_mod.parent.relative_to(GO_SOURCES).as_posix()
        if module and module.strip('"') != directory:
            link = gopath / "src" / module.strip('"')
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(go_mod.parent)
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, work / "main.go")


async def pion_binary() -> Path:
    """Build the Pion device (stacks/pion_client) offline in GOPATH mode from Debian's Go sources.

    Debian ships each module at its path without the ``/vN`` suffix (github.com/pion/webrtc holds
    module github.com/pion/webrtc/v3); a GOPATH in the cache maps every such module path to its
    directory with symlinks. Rebuilt when main.go is newer than the binary (go's build cache keeps
    it quick)."""
    if shutil.which("go") is None or not (GO_SOURCES / "github.com/pion/webrtc/go.mod").exists():
        pytest.fail("go / golang-github-pion-webrtc.v3-dev are not installed (scripts/test.sh installs them)")
    gopath = NODE_CACHE / "go"
    source = STACKS / "pion_client" / "main.go"
    work = gopath / "src" / "relayinterop" / "pion_client"
    binary = NODE_CACHE / "pion_client"
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    _prepare_gopath(gopath, source, work)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{gopath}:{GO_SOURCES.parent}", "GOPROXY": "off",
           "GOFLAGS": ""}
    proc = await asyncio.create_subprocess_exec("go", "build", "-o", str(binary), ".", cwd=work, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    return binary


async def run_binary_stack(binary: Path, relay: Relay, tmp_path: Path) -> Result:
    """A compiled device (Pion) calling ``relay``: same arguments and recordings as the Node stacks."""
    out = tmp_path / binary.name
    sent = write_packets(tmp_path / "uplink.opus")
    result = await run_stack([str(binary), relay.base_url + "/v1/realtime", json.dumps(device_headers()), str(out),
                              str(tmp_path / "uplink.opus")], out)
    result.report.update(sent)
    result.pcm = decode_rtp(out.with_suffix(".rtp"))
    return result


def loud_windows(pcm: np.ndarray, window_s: float = 0.02, threshold: float = 0.03) -> np.ndarray:
    n = int(RATE_HZ * window_s)
    frames = pcm[: len(pcm) // n * n].reshape(-1, n)
    return np.sqrt(np.mean(frames ** 2, axis=1)) > threshold


def assert_call_and_echo(result: Result) -> None:
    """The outside view of a good call: answer accepted, DTLS up, data channel open, the tone echoed
    back at the level and length it was sent."""
    r = result.report
    assert r["answer_accepted"], result.output[-3000:]
    assert r["dtls"] in ("connected", "CONNECTED"), (r, result.output[-3000:])
    assert r["datachannel_open"], (r, result.output[-3000:])
    loud = loud_windows(result.pcm)
    echoed_s = float(np.sum(loud)) * 0.02
    sent_s = r.get("sent_s", r["tone_s"])  # what the stack's source really played, where it can tell
    assert sent_s > 0.5 and abs(echoed_s - sent_s) <= 0.2 * sent_s + 0.06, (echoed_s, r)
    n = int(RATE_HZ * 0.02)
    frames = result.pcm[: len(result.pcm) // n * n].reshape(-1, n)[loud]
    inner = frames[2:-2] if len(frames) > 8 else frames  # onset and release frames are partial
    rms = float(np.sqrt(np.mean(inner ** 2)))
    sent_rms = r["amplitude"] / np.sqrt(2)
    level_db = 20 * np.log10(rms / sent_rms)
    assert abs(level_db) <= 2.0, (round(level_db, 2), echoed_s, rms, sent_rms, r)
    spectrum = np.abs(np.fft.rfft(inner.reshape(-1) * np.hanning(inner.size)))
    tone_hz = r.get("tone_hz", 440.0)
    assert abs(np.argmax(spectrum) * RATE_HZ / inner.size - tone_hz) < 15


@pytest.fixture
async def relay(relay_factory) -> AsyncIterator[Relay]:  # noqa: F811
    """A relay with default settings (demo mode, the built-in echo assistant). A foreign stack may exit
    without a DTLS close_notify: its call is ended here instead of waiting for consent loss."""
    r = await relay_factory()
    yield r
    for call in list(r.plane.registry.calls()):
        call.end("server_shutdown")
    await r.wait_idle()
