"""``relay call``: a terminal device. One whole call against a relay, printed as it happens.

    relay call --client-id ID --secret S --text "hello" --out heard.wav
    relay call --workspace-key rwk_... --wav hello.wav       # self-enrols a fresh client
    relay call --demo --text "hello"                          # a relay with RELAY_DEMO_MODE=true

It runs the device flow of the Realtime device API with :class:`relay.client.RelayClient`
(``POST /v1/realtime/sessions``, the WebRTC offer/answer on ``POST /v1/realtime``, audio
both ways, events on the data channel), sends a WAV file or a text message, prints the
events and the assistant's transcript as they arrive, writes what it heard to a WAV file,
and exits 0 only when audible audio came back (1 otherwise, 2 for bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import sys
import time
import uuid
import wave
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import numpy as np

RATE_HZ = 24000  # what is written to --out (mono 16-bit)
AUDIBLE_DBFS = -50.0  # a 20 ms frame louder than this counts as heard audio
MIN_AUDIBLE_MS = 100  # less than this is "no audio came back"
SETTLE_S = 0.5  # after the last response: keep listening this long for trailing audio
_TRANSCRIPT_DELTAS = frozenset({"response.audio_transcript.delta", "response.output_audio_transcript.delta",
                                "response.text.delta", "response.output_text.delta"})
_TRANSCRIPT_DONE = frozenset({"response.audio_transcript.done", "response.output_audio_transcript.done",
                              "response.text.done", "response.output_text.done"})


def add_call_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "call", help="place one call as a device (check a deployment)",
        description="Place one call as a device over the Realtime device API (WebRTC): send a WAV file or a "
                    "text message, print the events and the transcript, write what was heard to a WAV file. "
                    "Exits 0 only when audio came back.",
    )
    p.add_argument("url", nargs="?", default=os.environ.get("RELAY_URL", "http://127.0.0.1:8080"),
                   help="relay's base URL (default: $RELAY_URL or http://127.0.0.1:8080)")
    p.add_argument("--client-id", default=os.environ.get("RELAY_CLIENT_ID"),
                   help="the device's client id (default: $RELAY_CLIENT_ID; with --workspace-key and none "
                        "given, a fresh id that self-enrols)")
    p.add_argument("--secret", default=os.environ.get("RELAY_CLIENT_SECRET"),
                   help="the device's secret, 32+ characters (default: $RELAY_CLIENT_SECRET; none given: a fresh "
                        "one is enrolled on first use and printed to stderr)")
    p.add_argument("--workspace-key", default=os.environ.get("RELAY_WORKSPACE_KEY"),
                   help="workspace key for self-enrolment (default: $RELAY_WORKSPACE_KEY)")
    p.add_argument("--demo", action="store_true", help="demo mode (X-Demo-Mode: true; the relay must allow it)")
    p.add_argument("--assistant", help="X-Assistant-Id: an assistant of the client's workspace")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--text", help="send this user message (default: 'Hello from relay call.')")
    what.add_argument("--wav", help="send this WAV file (16-bit PCM, any rate) as the microphone")
    p.add_argument("--out", default="heard.wav", help="write the received audio here (default: heard.wav; "
                   "'-' for none)")
    p.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds (default: 30)")
    p.add_argument("--ice-address", action="append", dest="ice_addresses", metavar="ADDR",
                   help="gather ICE candidates on this local address (repeatable; default: 127.0.0.1 when the "
                        "URL is a loopback address, else every interface)")
    p.add_argument("--use-session-ice-servers", action="store_true",
                   help="use the STUN/TURN servers the session returns (off: host candidates only)")
    p.add_argument("--quiet", action="store_true", help="print only the transcript and the result")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Listener:
    """Collects what the device hears and prints what it is told, as it arrives."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.chunks: list[np.ndarray] = []
        self.audible_frames = 0
        self.frame_ms = 20.0
        self.responses_done = 0
        self.audio_playing = False
        self.errors: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.transcript: list[str] = []
        self.t0 = time.monotonic()

    def on_audio(self, pcm16: np.ndarray, rate_hz: int, arrival_s: float) -> None:
        self.chunks.append(pcm16.copy())
        if len(pcm16):
            self.frame_ms = 1000.0 * len(pcm16) / rate_hz
            rms = float(np.sqrt(np.mean(pcm16.astype(np.float64) ** 2)))
            if rms > 0 and 20 * np.log10(rms / 32768.0) > AUDIBLE_DBFS:
                self.audible_frames += 1

    @property
    def audible_ms(self) -> float:
        return self.audible_frames * self.frame_ms

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", "?"))
        t = time.monotonic() - self.t0
        if kind in _TRANSCRIPT_DELTAS:
            self.transcript.append(str(event.get("delta", "")))
        elif kind in _TRANSCRIPT_DONE:
            text = event.get("transcript", event.get("text"))
            self._print(f"assistant: {text if isinstance(text, str) else ''.join(self.transcript)}")
            self.transcript.clear()
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._print(f"you said: {event.get('transcript', '')}")
        elif kind == "error":
            err = event.get("error") or {}
            self.errors.append(err)
            self._print(f"error: {err.get('code') or err.get('type')}: {err.get('message')}")
        elif not self.quiet and not kind.endswith(".delta"):
            self._print(f"{t:7.2f} s  < {kind}")
        if kind == "response.done":
            self.responses_done += 1
        elif kind == "output_audio_buffer.started":
            self.audio_playing = True
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared"):
            self.audio_playing = False
        self.changed.set()

    def sent(self, kind: str) -> None:
        if not self.quiet:
            self._print(f"{time.monotonic() - self.t0:7.2f} s  > {kind}")

    def write_wav(self, path: str) -> float:
        """Write everything heard (mono, 16-bit, RATE_HZ); returns its length in seconds."""
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE_HZ)
            w.writeframes(samples.astype("<i2").tobytes())
        return len(samples) / RATE_HZ


async def _wait_for(listener: Listener, predicate: Any, deadline: float) -> bool:
    while not predicate():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        listener.changed.clear()
        try:
            await asyncio.wait_for(listener.changed.wait(), min(left, 0.2))
        except TimeoutError:
            pass
    return True


async def run_call(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from relay.client import ConnectError, RelayClient, RelayError

    client_id, secret = args.client_id, args.secret
    if not client_id:
        if not (args.workspace_key or args.demo):
            err.write("relay call: give --client-id (from `relay admin clients create`), --workspace-key "
                      "(self-enrolment) or --demo\n")
            return 2
        client_id = str(uuid.uuid4())
    if secret is None and not args.demo:
        secret = secrets.token_hex(32)
        err.write(f"relay call: enrolling a new secret for client {client_id}: {secret}\n"
                  "relay call: pass it as --secret (or $RELAY_CLIENT_SECRET) to call again as this client\n")
    ice = args.ice_addresses or (["127.0.0.1"] if _is_loopback(args.url) else None)
    listener = Listener(out, args.quiet)
    device = RelayClient(args.url, client_id, secret, demo=args.demo, assistant_id=args.assistant,
                         host_addresses=ice, use_session_ice_servers=args.use_session_ice_servers)
    if args.workspace_key:
        base_headers = device.headers

        def headers(content_type: str) -> dict[str, str]:
            return {**base_headers(content_type), "X-Workspace-Key": args.workspace_key}

        device.headers = headers  # type: ignore[method-assign]
    deadline = time.monotonic() + args.timeout
    answered = False
    try:
        async with device:
            try:
                session = await device.create_session(["text", "audio"])
                listener._print(f"session {session.get('id')} for client {client_id} "
                                f"({device.timings.session_ms:.0f} ms)")
                await device.connect(audio_source=getattr(args, "packets", None), on_event=listener.on_event, on_audio=listener.on_audio,
                                     audio_rate_hz=RATE_HZ, timeout_s=max(1.0, deadline - time.monotonic()))
            except RelayError as exc:
                err.write(f"relay call: {exc.status} {exc.code}: {exc.message}\n")
                return 1
            except (ConnectError, TimeoutError) as exc:
                err.write(f"relay call: could not connect: {exc}\n")
                return 1
            t = device.timings
            listener._print(f"connected: offer {t.offer_ms:.0f} ms, answer {t.sdp_ms:.0f} ms, "
                            f"ICE+DTLS {t.connect_ms or 0:.0f} ms")
            if not args.wav:
                text = args.text or "Hello from relay call."
                device.send_text(text)
                listener.sent(f"conversation.item.create: {text!r}")
                listener.sent("response.create")
            answered = await _wait_for(listener, lambda: listener.responses_done > 0, deadline)
            if answered:  # the audio of the answer plays out after response.done
                await _wait_for(listener, lambda: not listener.audio_playing, deadline)
                await asyncio.sleep(min(SETTLE_S, max(0.0, deadline - time.monotonic())))
    except (aiohttp.ClientError, OSError) as exc:
        err.write(f"relay call: cannot reach {args.url}: {exc}\n")
        return 1
    heard_ms = listener.audible_ms
    if args.out != "-":
        seconds = listener.write_wav(args.out)
        out.write(f"wrote {seconds:.2f} s to {args.out}\n")
    stats = device.receiver.stats.as_dict() if device.receiver else {}
    out.write(f"heard {heard_ms / 1000:.2f} s of audio ({stats.get('packets', 0)} packets, "
              f"{stats.get('lost', 0)} lost, codec {stats.get('codec') or '-'})\n")
    if not answered:
        err.write(f"relay call: no response.done within {args.timeout:.0f} s\n")
    if heard_ms < MIN_AUDIBLE_MS:
        err.write("relay call: no audio came back\n")
        return 1
    return 0


def load_wav(path: str) -> list[bytes]:
    """The WAV file as 20 ms Opus packets (what the device sends); ValueError in words when unusable."""
    from relay.client import encode_pcm16_to_opus, read_wav_pcm16

    if not Path(path).is_file():
        raise ValueError(f"no such WAV file: {path}")
    try:
        samples, rate_hz = read_wav_pcm16(path)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path} is not a WAV file ({exc})") from None
    if len(samples) == 0:
        raise ValueError(f"{path} has no audio")
    return encode_pcm16_to_opus(samples, rate_hz)


def main(args: argparse.Namespace) -> int:
    args.packets = None
    if args.wav:
        try:
            args.packets = load_wav(args.wav)
        except ValueError as exc:
            sys.stderr.write(f"relay call: {exc}\n")
            return 2
    try:
        return asyncio.run(run_call(args))
    except KeyboardInterrupt:
        return 130
