"""CallCore: the per-call state machine between one device and one upstream.

No sockets, no clock reads: every input carries ``now`` (seconds, float, any
monotonic origin). After each input the edge calls ``drain_actions()`` and
performs the returned actions in order (see ``relay.bridge.actions``).

Edge contract (media engineer):

* create: ``core = CallCore(assistant, audio_format="pcm16"|"g711_ulaw"|"g711_alaw", now=now, ...)``
* upstream connected: ``core.on_upstream_opened(now)`` -> SendUpstream(session.update ...)
* every upstream JSON event (already parsed): ``core.on_upstream_event(event, now)``
* every data-channel message (str or bytes): ``core.on_device_message(raw, now)``
* uplink audio: build ``append_event(pcm16_or_g711_bytes)`` and send it upstream yourself
  (no per-frame call into the core)
* media clock, every 20 ms: ``frame = core.pull_frame(now)`` -> 20 ms of downlink audio in
  ``core.audio_format`` (pcm16 24 kHz mono or G.711 8 kHz) or ``None`` when idle
* timers: arm one timer at ``core.next_deadline()`` and call ``core.on_timer(now)``
* server tool results: ``core.on_tool_result(call_id, output_json, now)``
* ``core.on_upstream_closed(reason, now)`` / ``core.on_device_closed(now)``
* stop when an ``EndCall`` action comes out (``core.ended`` is then True).
"""

from __future__ import annotations

import base64
from typing import Any

from relay.bridge.actions import Action


def append_event(audio: bytes) -> dict[str, Any]:
    """``input_audio_buffer.append`` for raw audio in the session's input format (same in both dialects)."""
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode("ascii")}


class CallCore:  # skeleton: filled in below in later commits
    def __init__(self, assistant: Any, *, now: float, audio_format: str = "pcm16", **limits: Any) -> None:
        self.assistant = assistant
        self.audio_format = audio_format
        self._actions: list[Action] = []
        self.ended = False

    def drain_actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def on_upstream_opened(self, now: float) -> None:
        raise NotImplementedError

    def on_upstream_event(self, event: dict[str, Any], now: float) -> None:
        raise NotImplementedError

    def on_device_message(self, raw: str | bytes, now: float) -> None:
        raise NotImplementedError

    def on_tool_result(self, call_id: str, output_json: str, now: float) -> None:
        raise NotImplementedError

    def pull_frame(self, now: float) -> bytes | None:
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        raise NotImplementedError

    def on_timer(self, now: float) -> None:
        raise NotImplementedError

    def on_upstream_closed(self, reason: str, now: float) -> None:
        raise NotImplementedError

    def on_device_closed(self, now: float) -> None:
        raise NotImplementedError
