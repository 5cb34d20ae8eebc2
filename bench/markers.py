"""Latency markers: short loud tone bursts in the outgoing audio, found again in what comes back.

Sans-I/O: :class:`MarkerDetector` takes decoded PCM frames with their arrival
time and reports rising edges of the marker tone (Goertzel power at the marker
frequency, relative to the frame's total power, above a level floor);
:class:`MarkerMatcher` pairs each detection with the marker sent just before it
and yields round-trip times; what stays unmatched is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MARKER_FREQ_HZ = 1800.0
# consecutive markers cycle through these tones, so an echo that comes back after
# the next marker was sent cannot be mistaken for that next marker's echo
MARKER_FREQS_HZ = (1800.0, 2400.0, 3000.0)
MARKER_MS = 40
MARKER_AMPLITUDE = 0.5  # of full scale (-6 dBFS)


def marker_tone(
    rate_hz: int, duration_ms: int = MARKER_MS, freq_hz: float = MARKER_FREQ_HZ, amplitude: float = MARKER_AMPLITUDE
) -> np.ndarray:
    """The burst as int16 samples, with 2 ms raised-cosine edges (no click energy)."""
    n = rate_hz * duration_ms // 1000
    t = np.arange(n) / rate_hz
    tone = np.sin(2 * np.pi * freq_hz * t) * amplitude * 32767
    ramp = max(1, rate_hz * 2 // 1000)
    env = np.ones(n)
    env[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[-ramp:] = env[:ramp][::-1]
    return (tone * env).astype(np.int16)


_TABLES: dict[tuple[int, int, float], tuple[np.ndarray, np.ndarray]] = {}


def _table(n: int, rate_hz: int, freq_hz: float) -> tuple[np.ndarray, np.ndarray]:
    key = (n, rate_hz, freq_hz)
    tab = _TABLES.get(key)
    if tab is None:
        if len(_TABLES) > 64:
            _TABLES.clear()
        t = np.arange(n) * (2 * math.pi * freq_hz / rate_hz)
        tab = _TABLES[key] = (np.cos(t), np.sin(t))
    return tab


def tone_ratio(frame: np.ndarray, rate_hz: int, freq_hz: float = MARKER_FREQ_HZ) -> tuple[float, float]:
    """(fraction of the frame's power at ``freq_hz``, frame RMS in int16 units)."""
    x = frame.astype(np.float64)
    n = len(x)
    if n == 0:
        return 0.0, 0.0
    energy = float(np.dot(x, x))
    if energy <= 0.0:
        return 0.0, 0.0
    cos_t, sin_t = _table(n, rate_hz, freq_hz)
    re = float(np.dot(x, cos_t))
    im = float(np.dot(x, sin_t))
    # a pure tone filling the frame gives (re^2 + im^2) * 2 / n == energy
    return min(1.0, (re * re + im * im) * 2.0 / n / energy), math.sqrt(energy / n)


class MarkerDetector:
    """Rising edges of the marker tones in a stream of decoded frames.

    ``feed`` returns the index (into ``freqs_hz``) of a tone that starts in this
    frame, or None.
    """

    def __init__(
        self,
        rate_hz: int = 48000,
        *,
        freqs_hz: tuple[float, ...] = MARKER_FREQS_HZ,
        min_ratio: float = 0.5,
        min_rms: float = 2000.0,
    ) -> None:
        self.rate_hz = rate_hz
        self.freqs_hz = freqs_hz
        self.min_ratio = min_ratio
        self.min_rms = min_rms
        self._current: int | None = None
        self.detections: list[tuple[float, int]] = []

    def feed(self, frame: np.ndarray, arrival_s: float) -> int | None:
        rate_hz = self.rate_hz
        if rate_hz >= 16000 and max(self.freqs_hz) < rate_hz / 4 - 1000:
            frame, rate_hz = frame[::2], rate_hz // 2  # tones well below the new Nyquist: half the cost
        present: int | None = None
        best = self.min_ratio
        for kind, freq in enumerate(self.freqs_hz):
            ratio, rms = tone_ratio(frame, rate_hz, freq)
            if rms < self.min_rms:
                break  # the same for every frequency: too quiet to be a marker
            if ratio >= best:
                best, present = ratio, kind
        edge = present if present is not None and present != self._current else None
        self._current = present
        if edge is not None:
            self.detections.append((arrival_s, edge))
        return edge


@dataclass
class MarkerMatcher:
    """Pairs sent markers with detections of the same tone; a detection more than
    ``timeout_s`` after a send is no match."""

    timeout_s: float = 1.0
    sent: list[float] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    rtts_ms: list[float] = field(default_factory=list)
    spurious: int = 0
    _matched: set[int] = field(default_factory=set)

    def on_sent(self, t_s: float, kind: int = 0) -> None:
        self.sent.append(t_s)
        self.kinds.append(kind)

    def on_detected(self, t_s: float, kind: int = 0) -> float | None:
        """Match against the latest marker of this tone sent before ``t_s``; the RTT in ms, or None."""
        for i in range(len(self.sent) - 1, -1, -1):
            s = self.sent[i]
            if s > t_s or self.kinds[i] != kind:
                continue
            if t_s - s > self.timeout_s or i in self._matched:
                break
            self._matched.add(i)
            rtt_ms = (t_s - s) * 1000.0
            self.rtts_ms.append(rtt_ms)
            return rtt_ms
        self.spurious += 1
        return None

    def lost(self, now_s: float) -> int:
        """Markers sent more than ``timeout_s`` before ``now_s`` that never came back."""
        due = sum(1 for s in self.sent if now_s - s > self.timeout_s)
        matched_due = sum(1 for i in self._matched if now_s - self.sent[i] > self.timeout_s)
        return due - matched_due

    def due(self, now_s: float) -> int:
        return sum(1 for s in self.sent if now_s - s > self.timeout_s)
