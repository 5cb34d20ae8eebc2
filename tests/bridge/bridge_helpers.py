"""Helpers for the sans-I/O call core tests: no sockets, no sleeps, time passed in."""

from __future__ import annotations

import base64
from typing import Any

from relay.bridge import CallCore, SendDevice, SendUpstream
from relay.models import Assistant, Tool

SERVER_TOOL = Tool(name="lookup_order", description="Look up an order.",
                   parameters={"type": "object", "properties": {"id": {"type": "string"}}},
                   side="server", webhook_url="http://127.0.0.1:9/hook")


def make_assistant(**kw: Any) -> Assistant:
    base: dict[str, Any] = dict(id="a1", name="Test", provider="local", model="relay-echo", voice="alloy",
                                instructions="SECRET PROMPT", tools=(SERVER_TOOL,), device_tools=True,
                                transcription={"model": "whisper-1"}, dialect="beta",
                                device_update_allow=("input_audio_transcription.language",))
    base.update(kw)
    return Assistant(**base)


class Harness:
    """Feeds a CallCore and collects its actions."""

    def __init__(self, core: CallCore) -> None:
        self.core = core
        self.actions: list[Any] = []
        self.t = 0.0

    def drain(self) -> list[Any]:
        out = self.core.drain_actions()
        self.actions.extend(out)
        return out

    def up(self, event: dict[str, Any]) -> list[Any]:
        self.core.on_upstream_event(event, self.t)
        return self.drain()

    def dev(self, raw: str | bytes | dict[str, Any]) -> list[Any]:
        import orjson

        if isinstance(raw, dict):
            raw = orjson.dumps(raw).decode()
        self.core.on_device_message(raw, self.t)
        return self.drain()

    def tick(self, n: int = 1) -> list[bytes | None]:
        frames = []
        for _ in range(n):
            self.t += 0.02
            frames.append(self.core.pull_frame(self.t))
        self.drain()
        return frames

    # --- upstream event builders (beta) ---
    @staticmethod
    def audio(item: str, response: str, ms: int, value: int = 1000, rate_bpm: int = 48) -> dict[str, Any]:
        sample = int(value).to_bytes(2, "little", signed=True)
        data = sample * (ms * rate_bpm // 2) if rate_bpm == 48 else bytes([value & 0xFF]) * (ms * rate_bpm)
        return {"type": "response.audio.delta", "response_id": response, "item_id": item,
                "output_index": 0, "content_index": 0, "delta": base64.b64encode(data).decode()}

    def start_response(self, response: str, item: str) -> None:
        self.up({"type": "response.created", "response": {"id": response, "status": "in_progress"}})
        self.up({"type": "response.output_item.added", "response_id": response,
                 "item": {"id": item, "type": "message", "role": "assistant", "content": []}})


def device_events(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.event for a in actions if isinstance(a, SendDevice)]


def upstream_events(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.event for a in actions if isinstance(a, SendUpstream)]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
