"""What a call used, and its usage rows, written while it runs and at its end (both edges).

``CallUsage`` is a call's tally (tokens from the core's ``RecordUsage``, audio seconds both ways).
``AudioMeter`` is the one place audio seconds are counted from audio bytes, for both edges: the
WebRTC call's uplink chunks (raw bytes) and the WebSocket call's ``input_audio_buffer.append`` /
audio deltas (base64), in the call's audio format.

``UsageBook`` (one per worker, owned by the call plane, ``relay.call.plane``) upserts one row per call
(``relay.store.usage``): every ``usage_checkpoint_s`` one transaction with a row for
each live call (``call.checkpoint_usage(now)``: what it has used so far), and the final
row when the call ends. A ``relay serve`` killed (kill -9, OOM, power) so loses at most
one interval of each live call instead of all of it.

The media path never waits on the database: the checkpoint task reads a few numbers
from each call (no await between them) and writes from its own task; a slow database
delays the next checkpoint, never a packet. Writes are serialised by one lock, and a
checkpoint takes no call that has started ending, so a checkpoint never overwrites a
final row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from relay.bridge.core import AUDIO_FORMATS
from relay.store.usage import UsageRow, record_usage_many, usage_row

log = logging.getLogger("relay.store")


@dataclass
class CallUsage:
    started_at: float
    ended_at: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    input_audio_s: float = 0.0
    output_audio_s: float = 0.0


def base64_size(text: str) -> int:
    """The number of bytes ``text`` (base64, as in Realtime audio events) decodes to, without decoding it."""
    n = len(text)
    return n * 3 // 4 - (2 if text.endswith("==") else 1 if text.endswith("=") else 0)


class AudioMeter:
    """Counts a call's audio seconds into its ``CallUsage``: bytes in the call's audio format (``pcm16``,
    ``g711_ulaw``, ``g711_alaw``) over that format's bytes per second."""

    __slots__ = ("usage", "bytes_per_s")

    def __init__(self, usage: CallUsage, audio_format: str) -> None:
        self.usage = usage
        self.bytes_per_s = AUDIO_FORMATS[audio_format][0] * 1000

    def input(self, size: int) -> None:
        """``size`` bytes of the device's audio went (or are held to go) to the assistant."""
        self.usage.input_audio_s += size / self.bytes_per_s

    def input_base64(self, text: str) -> None:
        self.input(base64_size(text))

    def output_base64(self, text: str) -> None:
        """Audio to the device as base64 (the WebSocket edge's deltas; WebRTC counts the frames it plays)."""
        self.usage.output_audio_s += base64_size(text) / self.bytes_per_s


def _row(call: Any, usage: CallUsage) -> UsageRow:
    device = call.device
    return usage_row(session_id=call.id, client_id=device.client_id, workspace_id=device.workspace_id,
                     assistant_id=device.assistant.id, demo=device.demo, started_at=usage.started_at,
                     ended_at=max(usage.ended_at, usage.started_at), input_tokens=usage.input_tokens,
                     output_tokens=usage.output_tokens, input_audio_s=usage.input_audio_s,
                     output_audio_s=usage.output_audio_s)


class UsageBook:
    def __init__(self, db: Any, calls: Callable[[], Iterable[Any]], checkpoint_s: float) -> None:
        self._db = db
        self._calls = calls
        self.checkpoint_s = checkpoint_s
        self._lock = asyncio.Lock()
        self.checkpoints = 0  # checkpoint transactions written
        self.checkpoint_failures = 0

    async def record_final(self, call: Any, usage: CallUsage) -> None:
        """The call's final row (after which no checkpoint touches it)."""
        row = _row(call, usage)
        async with self._lock:
            await record_usage_many(self._db, [row])

    async def checkpoint(self) -> int:
        """Upsert a row for every live call; returns how many."""
        async with self._lock:
            now = time.time()
            rows = [_row(call, call.checkpoint_usage(now)) for call in self._calls()
                    if call.end_reason is None and getattr(call, "core", None) is not None]
            await record_usage_many(self._db, rows)
        self.checkpoints += 1
        return len(rows)

    async def run(self) -> None:
        """Checkpoint every ``checkpoint_s`` until cancelled (errors are logged; the next one retries)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.checkpoint_s
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.checkpoint_s
            try:
                await self.checkpoint()
            except Exception:
                self.checkpoint_failures += 1
                log.exception("usage checkpoint failed")
            next_at = max(next_at, loop.time())  # a slow database delays, never bunches, checkpoints

