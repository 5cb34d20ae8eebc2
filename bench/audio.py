"""The bench's outgoing audio: speech with pauses (espeak-ng if no file is given), plus markers.

Everything is encoded to Opus once, up front; every simulated device then sends
the same packet list (each starting at its own time), so a device costs no
encoder time.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.markers import MARKER_FREQS_HZ, marker_tone
from relay.client.codec import OPUS_RATE_HZ, PTIME_MS, encode_pcm16_to_opus, read_wav_pcm16, resample_pcm16

SPEECH_TEXT = [
    "Hello there, can you hear me clearly?",
    "What is the weather like today?",
    "Please set the volume to forty percent.",
    "Tell me a short story about a lighthouse.",
]
SPEECH_RMS = 2500.0  # about -22 dBFS: clearly below the markers
FRAME_SAMPLES = OPUS_RATE_HZ * PTIME_MS // 1000


@dataclass
class BenchAudio:
    packets: list[bytes]
    marker_frames: dict[int, int]  # packet index where a marker starts -> its tone (index in MARKER_FREQS_HZ)
    duration_s: float
    source: str
    # packet indices of the last voiced frame of each utterance (followed by >= TURN_GAP_FRAMES of quiet)
    turn_end_frames: frozenset[int] = frozenset()


VOICED_RMS = 500.0
TURN_GAP_FRAMES = 15  # 300 ms of quiet ends an utterance (the assistant's VAD waits 500 ms)


def turn_ends(pcm: np.ndarray, frame_samples: int = FRAME_SAMPLES) -> frozenset[int]:
    """Indices of frames that end an utterance: voiced (RMS > ``VOICED_RMS``), then at least
    ``TURN_GAP_FRAMES`` quiet frames (the audio loops: the gap may wrap to its start)."""
    n = len(pcm) // frame_samples
    if n == 0:
        return frozenset()
    frames = pcm[: n * frame_samples].astype(np.float64).reshape(n, frame_samples)
    voiced = np.sqrt(np.mean(frames**2, axis=1)) > VOICED_RMS
    out = set()
    for i in np.flatnonzero(voiced):
        nxt = [(i + k) % n for k in range(1, TURN_GAP_FRAMES + 1)]
        if not voiced[nxt].any():
            out.add(int(i))
    return frozenset(out)


def espeak_speech(rate_hz: int = OPUS_RATE_HZ, pause_ms: int = 1200) -> np.ndarray:
    """Sentences spoken by espeak-ng with ``pause_ms`` of silence after each."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt install espeak-ng) and no --audio file was given")
    parts: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SPEECH_TEXT):
            path = Path(tmp) / f"s{i}.wav"
            subprocess.run(
                [exe, "-s", "160", "-w", str(path), text],
                check=True,
                timeout=30,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            samples, sr = read_wav_pcm16(path)
            parts.append(resample_pcm16(samples, sr, rate_hz))
            parts.append(np.zeros(rate_hz * pause_ms // 1000, np.int16))
    return np.concatenate(parts)


def normalise(samples: np.ndarray, rms: float = SPEECH_RMS) -> np.ndarray:
    x = samples.astype(np.float64)
    voiced = x[np.abs(x) > 50]
    cur = float(np.sqrt(np.mean(voiced**2))) if len(voiced) else 0.0
    if cur <= 0:
        return samples.astype(np.int16)
    return np.clip(x * (rms / cur), -32768, 32767).astype(np.int16)


def build(
    audio_path: str | None = None, *, markers: bool = True, marker_interval_ms: int = 1000, min_duration_s: float = 10.0
) -> BenchAudio:
    """The packet list every device sends (looped), with marker positions."""
    if audio_path:
        samples, sr = read_wav_pcm16(audio_path)
        samples = resample_pcm16(samples, sr, OPUS_RATE_HZ)
        source = audio_path
    else:
        samples = espeak_speech()
        source = "espeak-ng"
    samples = normalise(samples)
    reps = max(1, int(np.ceil(min_duration_s * OPUS_RATE_HZ / max(1, len(samples)))))
    samples = np.tile(samples, reps)
    n_frames = -(-len(samples) // FRAME_SAMPLES)
    pcm = np.zeros(n_frames * FRAME_SAMPLES, np.int16)
    pcm[: len(samples)] = samples
    ends = turn_ends(pcm)
    marker_frames: dict[int, int] = {}
    if markers:
        tones = [marker_tone(OPUS_RATE_HZ, freq_hz=f) for f in MARKER_FREQS_HZ]
        step = max(1, marker_interval_ms // PTIME_MS)
        for k, f in enumerate(range(step // 2, n_frames - 3, step)):
            kind = k % len(tones)
            start = f * FRAME_SAMPLES
            pcm[start : start + len(tones[kind])] = tones[kind]
            marker_frames[f] = kind
    packets = encode_pcm16_to_opus(pcm, OPUS_RATE_HZ)
    return BenchAudio(packets, marker_frames, n_frames * PTIME_MS / 1000, source, ends)
