"""A scripted upstream for fidelity tests: speaks the (beta) Realtime protocol over a real WebSocket
on 127.0.0.1, and answers only when the test tells it to.

relay's own local assistant decides by itself when to speak; these tests need an upstream that
sends exactly the audio the test chose, when it chose: ``respond(pcm16)`` sends one response
(``response.created`` .. one or more ``response.audio.delta`` .. ``response.done``), ``barge_in()``
sends ``input_audio_buffer.speech_started``. Every ``input_audio_buffer.append`` is kept
(``uplink_pcm16``): what relay delivered upstream, for the uplink measurements.
A recycle (relay opening a fresh socket) is followed: the newest socket is the one answered on.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from typing import Any

import orjson
from aiohttp import WSMsgType, web

_ids = itertools.count(1)


class RealtimeStub:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.sockets: list[web.WebSocketResponse] = []
        self.connected = asyncio.Event()
        self.uplink = bytearray()  # every appended chunk, in order (pcm16 24 kHz mono)
        self.received: list[dict[str, Any]] = []
        self.responses_sent = 0  # kept by the tests' driver

    async def start(self) -> RealtimeStub:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"
        return self

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def uplink_pcm16(self) -> bytes:
        return bytes(self.uplink)

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=16 << 20)
        await ws.prepare(request)
        self.sockets.append(ws)
        await self._send(ws, {"type": "session.created", "session": {"id": f"sess_{next(_ids)}"}})
        self.connected.set()
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            event = orjson.loads(msg.data)
            kind = event.get("type")
            if kind == "input_audio_buffer.append":
                self.uplink += base64.b64decode(event.get("audio", ""))
                continue
            self.received.append(event)
            if kind == "session.update":
                await self._send(ws, {"type": "session.updated", "session": event.get("session", {})})
        return ws

    @staticmethod
    async def _send(ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
        event.setdefault("event_id", f"event_{next(_ids)}")
        await ws.send_str(orjson.dumps(event).decode())

    @property
    def ws(self) -> web.WebSocketResponse:
        return self.sockets[-1]

    async def respond(self, pcm16: bytes, *, deltas: int = 1) -> str:
        """One audio response carrying ``pcm16`` (24 kHz mono) in ``deltas`` audio deltas."""
        ws = self.ws
        rid, item = f"resp_{next(_ids)}", f"item_{next(_ids)}"
        await self._send(ws, {"type": "response.created", "response": {"id": rid, "status": "in_progress"}})
        await self._send(ws, {"type": "response.output_item.added", "response_id": rid, "output_index": 0,
                              "item": {"id": item, "type": "message", "role": "assistant"}})
        step = -(-len(pcm16) // deltas)
        step += step % 2
        for i in range(0, len(pcm16), step):
            await self._send(ws, {"type": "response.audio.delta", "response_id": rid, "item_id": item,
                                  "output_index": 0, "content_index": 0,
                                  "delta": base64.b64encode(pcm16[i:i + step]).decode()})
        await self._send(ws, {"type": "response.audio.done", "response_id": rid, "item_id": item,
                              "output_index": 0, "content_index": 0})
        await self._send(ws, {"type": "response.done", "response": {"id": rid, "status": "completed",
                                                                      "output": []}})
        return rid

    async def barge_in(self) -> None:
        """The user started speaking: relay must stop playback at once (flush)."""
        await self._send(self.ws, {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0,
                                   "item_id": f"item_{next(_ids)}"})
