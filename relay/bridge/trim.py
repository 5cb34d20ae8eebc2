"""Playout backlog trimming: give back the delay a stall leaves in a real-time stream.

The playout buffer never drops audio on its own: a stall anywhere on the path
(relay's loop starved of CPU, a network hiccup) delays the audio behind it, and
in a stream the upstream produces *at real time* (a loopback, a streaming
speech-to-speech model) that delay then stays for the rest of the response,
because audio arrives exactly as fast as it plays. Stalls add up
(``python -m bench.stall``: 53 ms before twelve 100 ms freezes, 161 ms after).

``BacklogTrimmer`` watches, per window of played audio (1 s), two things:

- the *standing* backlog: the minimum of the buffered audio after each frame
  was taken. If it never fell below ``above_ms`` for a whole window, that much
  delay was never needed to ride out jitter;
- the arrival rate: the audio received during the window is within
  ``RATE_LOW..RATE_HIGH`` of the window's length -- a real-time stream. A model
  that delivers a response faster than real time (several seconds buffered,
  then nothing) never matches, so its pauses are never touched.

When both hold, the excess (``min - above_ms``) becomes a budget that is spent
by skipping *inaudible* frames only (peak <= ``QUIET_PEAK``, about -60 dBFS:
the pauses between words), at most one per tick: no speech is ever dropped, a
pause plays at up to double speed until the delay is back to ``above_ms`` (relay default 20 ms).
A skipped frame counts as played (the truncate position stays true).
Sans-I/O: the core calls ``received``, ``observe``, ``idle`` and ``may_skip``.

Measured (``python -m bench.stall -n 5 --stalls 12 --stall-ms 100``, marker round trip p50
before the stalls -> after): no trimming 66 -> 151 ms; ``above_ms`` 40: 54 -> 94 ms;
20: 58 -> 75 ms. The default is 20 ms (``RELAY_PLAYOUT_TRIM_ABOVE_MS``, 0 = off).
"""

from __future__ import annotations

from relay._fast import peak_abs

QUIET_PEAK = 32  # |sample| <= 32 of 32767 (about -60 dBFS): a frame that may be skipped
WINDOW_MS = 1000
RATE_LOW = 0.75  # received / played within a window: a real-time stream
RATE_HIGH = 1.34


class BacklogTrimmer:
    def __init__(self, *, above_ms: int, frame_ms: int = 20, window_ms: int = WINDOW_MS) -> None:
        if above_ms <= 0:
            raise ValueError("above_ms must be > 0 (pass no trimmer to disable trimming)")
        self.above_ms = above_ms
        self.frame_ms = frame_ms
        self._window_ticks = max(1, window_ms // frame_ms)
        self._ticks = 0
        self._min_ms: int | None = None
        self._received_ms = 0.0
        self.budget_ms = 0
        self.skipped_frames = 0

    def received(self, ms: float) -> None:
        """Audio of the stream arrived (``ms`` of it)."""
        self._received_ms += ms

    def idle(self) -> None:
        """Nothing to play this tick: no standing backlog; start over."""
        self._ticks = 0
        self._min_ms = None
        self._received_ms = 0.0
        self.budget_ms = 0

    def observe(self, buffered_ms: int) -> None:
        """A frame was played; ``buffered_ms`` is what is left behind it."""
        if self._min_ms is None or buffered_ms < self._min_ms:
            self._min_ms = buffered_ms
        self._ticks += 1
        if self._ticks < self._window_ticks:
            return
        played_ms = self._ticks * self.frame_ms
        standing = self._min_ms
        real_time = RATE_LOW * played_ms <= self._received_ms <= RATE_HIGH * played_ms
        self.budget_ms = standing - self.above_ms if real_time and standing > self.above_ms else 0
        self._ticks = 0
        self._min_ms = None
        self._received_ms = 0.0

    def may_skip(self, frame: bytes) -> bool:
        """Whether ``frame`` (PCM16) is to be skipped; the caller then plays the next frame."""
        if self.budget_ms < self.frame_ms or peak_abs(frame) > QUIET_PEAK:
            return False
        self.budget_ms -= self.frame_ms
        self.skipped_frames += 1
        return True

    def unskip(self) -> None:
        """The frame ``may_skip`` allowed was played after all (nothing followed it yet)."""
        self.budget_ms += self.frame_ms
        self.skipped_frames -= 1
