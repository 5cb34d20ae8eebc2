"""The reference relay: the same HTTP API as relay, written the way aiortc's examples do it.

No tricks, on purpose; it is the baseline every bench report compares against:

- ``POST /v1/realtime/sessions`` -> ``{"id", "iceServers": []}``;
  ``POST /v1/realtime`` (``application/sdp``) -> SDP answer. Any client id,
  any secret, demo mode accepted (no database).
- uplink: a ``track.recv()`` loop per call reading frames decoded by aiortc's
  decoder thread, ``av.AudioResampler`` to 24 kHz mono s16, base64
  ``input_audio_buffer.append`` on one upstream WebSocket per call;
- downlink: ``response.audio.delta`` -> a buffer -> an ``AudioStreamTrack``
  subclass yielding PCM ``av.AudioFrame``s, so aiortc encodes with its default
  encoder in the executor and runs its audio-level loop on every frame;
- data channel <-> upstream: every other event forwarded as-is.

Run: ``python -m bench.reference --port 8090 [--upstream ws://...]`` (default upstream
``local``: relay's built-in local assistant started inside this process, as
``relay serve`` does, so both relays carry the same assistant cost).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import fractions
import logging
import secrets
import time
import uuid
from typing import Any

import aiohttp
import av
import orjson
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from relay.client.ice import host_addresses

log = logging.getLogger("bench.reference")

UPSTREAM_RATE_HZ = 24000
PTIME_S = 0.02
SAMPLES = int(UPSTREAM_RATE_HZ * PTIME_S)
MAX_PLAYOUT_BYTES = UPSTREAM_RATE_HZ * 2 * 30  # 30 s of audio; beyond that new audio is dropped
MAX_SDP_BYTES = 32 * 1024
MAX_CALLS = 1000

UPSTREAM_URL = web.AppKey("upstream_url", str)
MODEL = web.AppKey("model", str)
HOSTS = web.AppKey("hosts", list)
CALLS = web.AppKey("calls", set)
HTTP = web.AppKey("http", aiohttp.ClientSession)


def error(status: int, message: str, code: str, type_: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "code": code}}, status=status)


class PlayoutTrack(MediaStreamTrack):
    """Downlink audio as aiortc's ``AudioStreamTrack`` does it: PCM frames on a 20 ms schedule."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self._start: float | None = None
        self._timestamp = 0

    def push(self, pcm16: bytes) -> None:
        if len(self.buffer) + len(pcm16) <= MAX_PLAYOUT_BYTES:
            self.buffer += pcm16

    def clear(self) -> None:
        self.buffer.clear()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._timestamp += SAMPLES
            wait = self._start + (self._timestamp / UPSTREAM_RATE_HZ) - time.time()
            await asyncio.sleep(wait)
        nbytes = SAMPLES * 2
        chunk = bytes(self.buffer[:nbytes])
        del self.buffer[:nbytes]
        if len(chunk) < nbytes:
            chunk += bytes(nbytes - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(chunk)
        frame.pts = self._timestamp
        frame.sample_rate = UPSTREAM_RATE_HZ
        frame.time_base = fractions.Fraction(1, UPSTREAM_RATE_HZ)
        return frame


class Call:
    """One device: a peer connection, one upstream WebSocket, three tasks it owns."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.id = "call_" + uuid.uuid4().hex[:12]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.playout = PlayoutTrack()
        self.channel: Any = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task failed", self.id, exc_info=task.exception())
            self.spawn(self.close())

    async def open_upstream(self) -> None:
        url = self.app[UPSTREAM_URL]
        sep = "&" if "?" in url else "?"
        self.ws = await self.app[HTTP].ws_connect(
            f"{url}{sep}model={self.app[MODEL]}", max_msg_size=16 << 20, headers={"OpenAI-Beta": "realtime=v1"}
        )
        await self.ws.send_str(
            orjson.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "model": self.app[MODEL],
                        "modalities": ["text", "audio"],
                        "input_audio_format": "pcm16",
                        "output_audio_format": "pcm16",
                        "turn_detection": {"type": "server_vad"},
                    },
                }
            ).decode()
        )

    async def uplink(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=UPSTREAM_RATE_HZ)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in resampler.resample(frame):
                pcm = bytes(out.planes[0])[: out.samples * 2]
                if self.ws is not None and not self.ws.closed:
                    await self.ws.send_str(
                        orjson.dumps(
                            {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
                        ).decode()
                    )

    async def downlink(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = orjson.loads(msg.data)
            kind = event.get("type")
            if kind in ("response.audio.delta", "response.output_audio.delta"):
                self.playout.push(base64.b64decode(event["delta"]))
                continue
            if kind == "input_audio_buffer.speech_started":
                self.playout.clear()
            if self.channel is not None and self.channel.readyState == "open":
                self.channel.send(msg.data)
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.app[CALLS].discard(self)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        if self.ws is not None:
            await self.ws.close()
        self.playout.stop()
        await self.pc.close()


async def create_session(request: web.Request) -> web.Response:
    if not request.headers.get("X-Client-Id"):
        return error(400, "Missing X-Client-Id header", "missing_header")
    return web.json_response({"id": "session_" + secrets.token_hex(8), "iceServers": []})


async def realtime(request: web.Request) -> web.Response:
    if not request.headers.get("X-Client-Id"):
        return error(400, "Missing X-Client-Id header", "missing_header")
    if request.content_type != "application/sdp":
        return error(415, "Content-Type must be application/sdp", "unsupported_media_type")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        return error(413, "SDP offer too large", "payload_too_large")
    offer = (await request.content.read(MAX_SDP_BYTES + 1)).decode("utf-8", "replace")
    if len(offer) > MAX_SDP_BYTES:
        return error(413, "SDP offer too large", "payload_too_large")
    if "m=audio" not in offer:
        return error(400, "SDP offer has no audio section", "invalid_sdp")
    calls = request.app[CALLS]
    if len(calls) >= MAX_CALLS:
        return error(503, "too many calls", "overloaded", "server_error")
    call = Call(request.app)
    calls.add(call)
    pc = call.pc

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            call.spawn(call.uplink(track))

    @pc.on("datachannel")
    def on_datachannel(channel: Any) -> None:
        call.channel = channel

        @channel.on("message")
        def on_message(message: Any) -> None:
            if call.ws is not None and not call.ws.closed and isinstance(message, str):
                call.spawn(call.ws.send_str(message))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await call.close()

    try:
        await call.open_upstream()
        pc.addTrack(call.playout)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        with host_addresses(request.app[HOSTS] or None):
            await pc.setLocalDescription(await pc.createAnswer())
    except (ValueError, aiohttp.ClientError, OSError) as exc:
        await call.close()
        return error(
            400 if isinstance(exc, ValueError) else 502,
            f"cannot set up the call: {exc}",
            "invalid_sdp" if isinstance(exc, ValueError) else "upstream_unavailable",
        )
    call.spawn(call.downlink())
    return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp")


async def _lifecycle(app: web.Application) -> Any:
    app[HTTP] = aiohttp.ClientSession()
    assistant = None
    if app[UPSTREAM_URL] == "local":
        # relay's built-in local assistant, in this process, as `relay serve` runs it
        from relay.assistant import start_local_assistant

        assistant, app[UPSTREAM_URL] = await start_local_assistant("127.0.0.1", 0)
    yield
    await asyncio.gather(*(c.close() for c in list(app[CALLS])), return_exceptions=True)
    await app[HTTP].close()
    if assistant is not None:
        await assistant.cleanup()


def create_app(upstream_url: str, *, model: str = "relay-loopback", hosts: list[str] | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_SDP_BYTES)
    app[UPSTREAM_URL] = upstream_url
    app[MODEL] = model
    app[HOSTS] = list(hosts if hosts is not None else ["127.0.0.1"])
    app[CALLS] = set()
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post("/v1/realtime/sessions", create_session)
    app.router.add_post("/v1/realtime", realtime)
    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument(
        "--upstream",
        default="local",
        help="Realtime WebSocket URL (beta dialect); 'local': start relay's local assistant in-process",
    )
    ap.add_argument("--model", default="relay-loopback", help="model asked of the upstream")
    ap.add_argument(
        "--ice-host", action="append", default=None, help="host address ICE advertises (repeatable; default 127.0.0.1)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    web.run_app(
        create_app(args.upstream, model=args.model, hosts=args.ice_host), host=args.host, port=args.port, print=None
    )


if __name__ == "__main__":
    main()
