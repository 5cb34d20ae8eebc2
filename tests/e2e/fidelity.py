"""Signals and measurements for the fidelity tests: tone bursts and words at a chosen level, and what
the far side decoded (level per burst, residue in the silences between)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relay.client.codec import read_wav_pcm16, resample_pcm16

UP_RATE_HZ = 24000  # the upstream's pcm16 rate
FULL_SCALE = 32768.0


def dbfs(rms_fs: float) -> float:
    return 20 * np.log10(max(rms_fs, 1e-12))


def tone_burst(ms: float, dbfs_peak: float, hz: float, rate_hz: int = UP_RATE_HZ, ramp_ms: float = 5.0) -> np.ndarray:
    """A sine burst of ``ms`` whose peak is ``dbfs_peak`` dBFS, with raised-cosine ramps (no clicks)."""
    n = int(rate_hz * ms / 1000)
    t = np.arange(n) / rate_hz
    x = 10 ** (dbfs_peak / 20) * 32767 * np.sin(2 * np.pi * hz * t)
    r = int(rate_hz * ramp_ms / 1000)
    if r:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, r))
        x[:r] *= ramp
        x[n - r:] *= ramp[::-1]
    return np.round(x).astype(np.int16)


def silence(ms: float, rate_hz: int = UP_RATE_HZ) -> np.ndarray:
    return np.zeros(int(rate_hz * ms / 1000), np.int16)


def energy(x: np.ndarray, rate_hz: int) -> float:
    """Signal energy in full-scale^2 * seconds (comparable across sample rates)."""
    y = x.astype(np.float64) / FULL_SCALE
    return float(np.sum(y * y)) / rate_hz


def band_energy(x: np.ndarray, rate_hz: int, lo_hz: float, hi_hz: float) -> float:
    """Energy of ``x`` between ``lo_hz`` and ``hi_hz`` (Parseval over a real FFT)."""
    y = x.astype(np.float64) / FULL_SCALE
    spectrum = np.fft.rfft(y)
    freqs = np.fft.rfftfreq(len(y), 1 / rate_hz)
    band = (freqs >= lo_hz) & (freqs <= hi_hz)
    return float(2 * np.sum(np.abs(spectrum[band]) ** 2) / len(y)) / rate_hz


def level_db(decoded_energy: float, sent_energy: float) -> float:
    return float(10 * np.log10(max(decoded_energy, 1e-20) / sent_energy))


@dataclass
class Segment:
    start: int  # samples
    end: int


def loud_segments(x: np.ndarray, rate_hz: int, threshold_dbfs: float = -45.0, block_ms: float = 5.0,
                  merge_ms: float = 30.0) -> list[Segment]:
    """Stretches of ``x`` whose 5 ms RMS exceeds ``threshold_dbfs`` (gaps under ``merge_ms`` merged)."""
    w = int(rate_hz * block_ms / 1000)
    n = len(x) // w
    if n == 0:
        return []
    blocks = x[: n * w].astype(np.float64).reshape(n, w) / FULL_SCALE
    loud = np.sqrt(np.mean(blocks * blocks, axis=1)) > 10 ** (threshold_dbfs / 20)
    out: list[Segment] = []
    gap_blocks = int(merge_ms / block_ms)
    for i in np.flatnonzero(loud):
        if out and i * w - out[-1].end <= gap_blocks * w:
            out[-1].end = (i + 1) * w
        else:
            out.append(Segment(i * w, (i + 1) * w))
    return out


def max_window_dbfs(x: np.ndarray, rate_hz: int, mask: np.ndarray, window_ms: float = 20.0) -> float:
    """The loudest 20 ms window (RMS, dBFS) of ``x`` where ``mask`` is set in the whole window."""
    w = int(rate_hz * window_ms / 1000)
    worst = -200.0
    for i in range(0, len(x) - w + 1, w // 2):
        if mask[i:i + w].all():
            y = x[i:i + w].astype(np.float64) / FULL_SCALE
            worst = max(worst, dbfs(float(np.sqrt(np.mean(y * y)))))
    return worst


@dataclass
class Burst:
    """One sound the test had the upstream send, and what the device decoded of it."""

    label: str
    pcm16: np.ndarray  # as sent, 24 kHz
    band_hz: tuple[float, float] | None  # tones: measured in this band; words: broadband
    checked: bool = True  # its level is asserted (not for audio a barge-in cut on purpose)
    level_db: float | None = None  # decoded energy / sent energy


def analyse(decoded: np.ndarray, rate_hz: int, bursts: list[Burst], *, pre_ms: float = 10.0,
            post_ms: float = 60.0, merge_ms: float = 15.0, word_gap_ms: float = 90.0,
            sent_rate_hz: int = UP_RATE_HZ) -> float:
    """Find each burst in the loud stretches of ``decoded``, fill in ``level_db``, and return the
    residue: the loudest 20 ms window (dBFS) outside every burst (from ``pre_ms`` before its stretch
    to ``post_ms`` after it). A burst not found keeps ``level_db = None``.

    A tone (each of a run at its own pitch) is the stretch holding most of its band, measured in that
    band against the same band of what was sent (two tones a few ms apart may share a stretch); the
    words, broadband, are the remaining stretches in order (with the ones that follow within
    ``word_gap_ms``: a word's stops split it).
    """
    segments = loud_segments(decoded, rate_hz, merge_ms=merge_ms)
    keep = np.zeros(len(decoded), bool)
    pre, post = int(rate_hz * pre_ms / 1000), int(rate_hz * post_ms / 1000)
    word_gap = int(rate_hz * word_gap_ms / 1000)

    def span(k: int) -> tuple[int, int]:
        return max(0, segments[k].start - pre), min(len(decoded), segments[k].end + post)

    claimed: set[int] = set()
    for burst in bursts:
        if burst.band_hz is None or not segments:
            continue
        scored = [(band_energy(decoded[slice(*span(j))], rate_hz, *burst.band_hz), j) for j in range(len(segments))]
        e, k = max(scored)
        claimed.add(k)
        keep[slice(*span(k))] = True
        burst.level_db = level_db(e, band_energy(burst.pcm16, sent_rate_hz, *burst.band_hz))
    free = iter([j for j in range(len(segments)) if j not in claimed])
    pending: int | None = None
    for burst in bursts:
        if burst.band_hz is not None:
            continue
        k = pending if pending is not None else next(free, None)
        pending = None
        if k is None:
            break
        lo, hi = span(k)
        for j in free:
            if segments[j].start - segments[k].end >= word_gap:
                pending = j
                break
            k, hi = j, span(j)[1]
        keep[lo:hi] = True
        burst.level_db = level_db(energy(decoded[lo:hi], rate_hz), energy(burst.pcm16, sent_rate_hz))
    return max_window_dbfs(decoded, rate_hz, ~keep)


def espeak_pcm16(text: str, rate_hz: int = UP_RATE_HZ, peak_dbfs: float = -6.0, voice: str = "en-us") -> np.ndarray:
    """``text`` spoken by espeak-ng, at ``rate_hz``, normalised to ``peak_dbfs``, leading and trailing
    silence cut."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (scripts/test.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", voice, "-s", "160", "-w", str(wav), text], check=True, capture_output=True)
        samples, native = read_wav_pcm16(wav)
    x = resample_pcm16(samples, native, rate_hz).astype(np.float64)
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    x = x[loud[0]:loud[-1] + 1]
    x *= 10 ** (peak_dbfs / 20) * 32767 / np.abs(x).max()
    return np.round(x).astype(np.int16)


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.005)
