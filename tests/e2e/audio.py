"""Signal helpers for end-to-end tests: build tone bursts, analyse what came back."""

from __future__ import annotations

import fractions
from dataclasses import dataclass, field

import numpy as np

RATE_HZ = 48000


def bursts(schedule: list[tuple[float, float, float]], total_s: float, rate_hz: int = RATE_HZ,
           amp: int = 9000) -> np.ndarray:
    """Silence of ``total_s`` with tone bursts ``(start_s, duration_s, hz)`` (10 ms ramps, no clicks)."""
    out = np.zeros(int(total_s * rate_hz), dtype=np.float64)
    for start_s, dur_s, hz in schedule:
        n = int(dur_s * rate_hz)
        t = np.arange(n) / rate_hz
        tone = amp * np.sin(2 * np.pi * hz * t)
        ramp = min(n // 2, int(0.01 * rate_hz))
        tone[:ramp] *= np.linspace(0, 1, ramp)
        tone[n - ramp:] *= np.linspace(1, 0, ramp)
        i = int(start_s * rate_hz)
        out[i:i + n] += tone[: len(out) - i]
    return out.astype(np.int16)


def dominant_hz(samples: np.ndarray, rate_hz: int) -> float:
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate_hz / len(x))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


@dataclass
class Capture:
    """Collects the device's decoded downlink audio (``on_audio`` callback of ``RelayClient.connect``)."""

    rate_hz: int = RATE_HZ
    chunks: list[np.ndarray] = field(default_factory=list)

    def __call__(self, pcm16: bytes, rate_hz: int, arrival_s: float) -> None:
        self.rate_hz = rate_hz
        self.chunks.append(np.frombuffer(pcm16, dtype=np.int16))

    @property
    def samples(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)

    @property
    def seconds(self) -> float:
        return sum(len(c) for c in self.chunks) / self.rate_hz

    def segments(self, threshold: float = 1000.0, window_ms: int = 20, min_gap_ms: int = 100
                 ) -> list[tuple[float, float]]:
        """Loud stretches ``(start_s, duration_s)`` of the received stream (by 20 ms windows)."""
        x = self.samples
        w = self.rate_hz * window_ms // 1000
        n = len(x) // w
        loud = [rms(x[i * w:(i + 1) * w]) > threshold for i in range(n)]
        out: list[list[int]] = []
        for i, flag in enumerate(loud):
            if not flag:
                continue
            if out and i - out[-1][1] <= min_gap_ms // window_ms:
                out[-1][1] = i + 1
            else:
                out.append([i, i + 1])
        return [(a * window_ms / 1000, (b - a) * window_ms / 1000) for a, b in out]

    def segment_samples(self, segment: tuple[float, float]) -> np.ndarray:
        start, dur = segment
        return self.samples[int(start * self.rate_hz):int((start + dur) * self.rate_hz)]


class PcmFrameTrack:
    """Factory of an aiortc audio track playing ``samples`` (48 kHz mono) as PCM frames, then silence.

    aiortc encodes these itself with the negotiated codec -- the path a G.711 device takes
    (the SDK's pre-encoded sources are Opus only).
    """

    def __new__(cls, samples: np.ndarray):  # type: ignore[misc]
        from aiortc.mediastreams import AudioStreamTrack
        from av import AudioFrame

        class _Track(AudioStreamTrack):
            def __init__(self) -> None:
                super().__init__()
                self.pos = 0

            async def recv(self) -> AudioFrame:
                frame = await super().recv()  # aiortc paces 20 ms frames (its own are 8 kHz silence)
                n = RATE_HZ // 50
                chunk = samples[self.pos:self.pos + n]
                self.pos += n
                if len(chunk) < n:
                    chunk = np.concatenate([chunk, np.zeros(n - len(chunk), dtype=np.int16)])
                out = AudioFrame.from_ndarray(chunk.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
                out.sample_rate = RATE_HZ
                out.pts = frame.pts * RATE_HZ // frame.sample_rate
                out.time_base = fractions.Fraction(1, RATE_HZ)
                return out

        return _Track()


class LiveTrack:
    """Factory of an aiortc audio track that sends silence until ``track.play(samples)`` (48 kHz mono)
    is called -- a microphone the test speaks into at chosen moments."""

    def __new__(cls):  # type: ignore[misc]
        from aiortc.mediastreams import AudioStreamTrack
        from av import AudioFrame

        class _Live(AudioStreamTrack):
            def __init__(self) -> None:
                super().__init__()
                self.pending = np.zeros(0, dtype=np.int16)

            def play(self, samples: np.ndarray) -> None:
                self.pending = np.concatenate([self.pending, samples.astype(np.int16)])

            async def recv(self) -> AudioFrame:
                frame = await super().recv()
                n = RATE_HZ // 50
                chunk, self.pending = self.pending[:n], self.pending[n:]
                if len(chunk) < n:
                    chunk = np.concatenate([chunk, np.zeros(n - len(chunk), dtype=np.int16)])
                out = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
                out.sample_rate = RATE_HZ
                out.pts = frame.pts * RATE_HZ // frame.sample_rate
                out.time_base = fractions.Fraction(1, RATE_HZ)
                return out

        return _Live()


def tone(seconds: float, hz: float, amp: int = 9000) -> np.ndarray:
    return bursts([(0.0, seconds, hz)], total_s=seconds, amp=amp)


def envelope(samples: np.ndarray, rate_hz: int, window_ms: int = 20) -> np.ndarray:
    w = rate_hz * window_ms // 1000
    n = len(samples) // w
    return np.array([rms(samples[i * w:(i + 1) * w]) for i in range(n)])


def best_envelope_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 25) -> float:
    """Pearson correlation of two energy envelopes at the best alignment (lag within +-max_lag windows)."""
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y))
        if n < 10:
            continue
        c = np.corrcoef(x[:n], y[:n])[0, 1]
        if np.isfinite(c):
            best = max(best, float(c))
    return best
