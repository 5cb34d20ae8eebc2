"""Energy voice-activity detection for the local assistant (pure, sample-clocked).

Times are milliseconds of input audio since the session's first append, so the
results do not depend on how fast the audio arrives.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from relay._fast import rms_dbfs

WINDOW_MS = 10


def threshold_dbfs(threshold: float) -> float:
    """OpenAI's 0..1 ``turn_detection.threshold`` mapped onto an energy level: 0.5 -> -40 dBFS."""
    return -60.0 + 40.0 * max(0.0, min(1.0, threshold))


class EnergyVAD:
    """Feed pcm16 (any chunking); get ``("speech_started", ms)`` / ``("speech_stopped", ms)`` events.
    After a stop, ``utterance`` holds the speech (with ``prefix_padding_ms`` before it)."""

    def __init__(self, rate_hz: int, *, threshold: float = 0.5, prefix_padding_ms: int = 300,
                 silence_duration_ms: int = 500, start_ms: int = 60, max_utterance_ms: int = 30000) -> None:
        self.rate_hz = rate_hz
        self.level_dbfs = threshold_dbfs(threshold)
        self.silence_ms = max(WINDOW_MS, silence_duration_ms)
        self.start_ms = start_ms
        self._window_bytes = rate_hz * WINDOW_MS // 1000 * 2
        self._max_utt_bytes = max_utterance_ms * rate_hz // 1000 * 2
        self._prefix: deque[bytes] = deque(maxlen=max(1, prefix_padding_ms // WINDOW_MS))
        self._pending = b""
        self._voiced: list[bytes] = []  # candidate start windows
        self._speech = bytearray()
        self._silence_run: list[bytes] = []
        self.in_speech = False
        self.pos_ms = 0
        self.utterance = b""
        self.speech_start_ms = 0

    @classmethod
    def from_turn_detection(cls, rate_hz: int, td: dict[str, Any]) -> EnergyVAD:
        def num(key: str, default: float) -> float:
            v = td.get(key)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default

        return cls(rate_hz, threshold=num("threshold", 0.5), prefix_padding_ms=int(num("prefix_padding_ms", 300)),
                   silence_duration_ms=int(num("silence_duration_ms", 500)))

    def feed(self, pcm16: bytes) -> list[tuple[str, int]]:
        events: list[tuple[str, int]] = []
        data = self._pending + pcm16
        wb = self._window_bytes
        n = len(data) - len(data) % wb
        for i in range(0, n, wb):
            ev = self._window(data[i:i + wb])
            if ev is not None:
                events.append(ev)
        self._pending = data[n:]
        return events

    def _window(self, win: bytes) -> tuple[str, int] | None:
        self.pos_ms += WINDOW_MS
        loud = rms_dbfs(win) >= self.level_dbfs
        if not self.in_speech:
            if loud:
                self._voiced.append(win)
                if len(self._voiced) * WINDOW_MS >= self.start_ms:
                    self.in_speech = True
                    self.speech_start_ms = self.pos_ms - len(self._voiced) * WINDOW_MS
                    self._speech = bytearray(b"".join(self._prefix) + b"".join(self._voiced))
                    self._voiced = []
                    self._silence_run = []
                    return ("speech_started", self.speech_start_ms)
            else:
                self._prefix.extend(self._voiced)
                self._voiced = []
                self._prefix.append(win)
            return None
        if loud:
            if self._silence_run:
                self._speech += b"".join(self._silence_run)
                self._silence_run = []
            if len(self._speech) < self._max_utt_bytes:
                self._speech += win
            return None
        self._silence_run.append(win)
        if len(self._silence_run) * WINDOW_MS >= self.silence_ms:
            self.in_speech = False
            end_ms = self.pos_ms - len(self._silence_run) * WINDOW_MS
            self.utterance = bytes(self._speech[: self._max_utt_bytes])
            self._speech = bytearray()
            self._prefix.clear()
            self._prefix.extend(self._silence_run[-self._prefix.maxlen:] if self._prefix.maxlen else [])
            self._silence_run = []
            return ("speech_stopped", end_ms)
        return None

    def reset(self) -> None:
        self._pending = b""
        self._voiced = []
        self._speech = bytearray()
        self._silence_run = []
        self.in_speech = False
