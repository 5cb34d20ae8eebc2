"""Helpers for talking to the local assistant over a real WebSocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import math
from array import array
from typing import Any

import aiohttp
import orjson

RECV_TIMEOUT_S = 10.0  # a safety net against hangs, not a performance assertion


def tone(ms: int, *, freq_hz: float = 440.0, rate_hz: int = 24000, amplitude: int = 8000) -> bytes:
    n = rate_hz * ms // 1000
    return array("h", (int(amplitude * math.sin(2 * math.pi * freq_hz * i / rate_hz)) for i in range(n))).tobytes()


def silence(ms: int, rate_hz: int = 24000) -> bytes:
    return bytes(2 * rate_hz * ms // 1000)


def dominant_hz(pcm16: bytes, rate_hz: int) -> float:
    import numpy as np

    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate_hz)[int(np.argmax(spectrum))])


class Conn:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(event).decode())

    async def append(self, audio: bytes, chunk_bytes: int = 960) -> None:
        for i in range(0, len(audio), chunk_bytes):
            await self.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(audio[i:i + chunk_bytes]).decode()})

    async def recv(self) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), RECV_TIMEOUT_S)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {msg.type} {self.ws.close_code}")
        ev = orjson.loads(msg.data)
        self.seen.append(ev)
        return ev

    async def until(self, etype: str) -> list[dict[str, Any]]:
        """Events up to and including the first of type ``etype``."""
        out = []
        while True:
            ev = await self.recv()
            out.append(ev)
            if ev["type"] == etype:
                return out

    async def closed(self) -> int | None:
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), RECV_TIMEOUT_S)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.ws.close_code
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.seen.append(orjson.loads(msg.data))


def audio_of(events: list[dict[str, Any]], delta_type: str = "response.audio.delta") -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == delta_type)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
