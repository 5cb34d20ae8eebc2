"""The marker detector and matcher on synthetic audio (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.audio import normalise
from bench.markers import MARKER_FREQS_HZ, MarkerDetector, MarkerMatcher, marker_tone, tone_ratio
from relay.client.codec import PacketDecoder, encode_pcm16_to_opus

RATE = 48000
FRAME = 960


def _frames(signal: np.ndarray) -> list[np.ndarray]:
    return [signal[i : i + FRAME] for i in range(0, len(signal) - FRAME + 1, FRAME)]


def _speechlike(seconds: float, seed: int = 1) -> np.ndarray:
    """Harmonic-rich voiced buzz (120 Hz pulse train through a crude formant) + noise, speech-level."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = np.cumsum(2 * np.pi * f0 / RATE)
    buzz = sum(np.sin(k * phase) / k for k in range(1, 30))
    sig = buzz * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.2, n)
    return normalise((sig * 3000).astype(np.int16))


def test_tone_ratio_separates_tone_from_speech_and_noise():
    ratio, rms = tone_ratio(marker_tone(RATE)[:FRAME], RATE)
    assert ratio > 0.9 and rms > 8000
    for frame in _frames(_speechlike(2.0)):
        assert tone_ratio(frame, RATE)[0] < 0.5
    assert tone_ratio(np.zeros(FRAME, np.int16), RATE) == (0.0, 0.0)


def test_detector_finds_each_marker_and_its_tone_in_speech_after_opus_round_trip():
    speech = _speechlike(5.0)
    starts = [25, 75, 125, 175]  # frame indices, i.e. 0.5 s, 1.5 s, ...
    kinds = [k % len(MARKER_FREQS_HZ) for k in range(len(starts))]
    for f, kind in zip(starts, kinds, strict=True):
        tone = marker_tone(RATE, freq_hz=MARKER_FREQS_HZ[kind])
        speech[f * FRAME : f * FRAME + len(tone)] = tone
    decoder = PacketDecoder("opus", RATE)
    det = MarkerDetector(RATE)
    edges = []
    for i, packet in enumerate(encode_pcm16_to_opus(speech, RATE)):
        kind = det.feed(decoder.decode(packet), i * 0.02)
        if kind is not None:
            edges.append((i, kind))
    assert [k for _, k in edges] == kinds
    assert all(abs(e - s) <= 1 for (e, _), s in zip(edges, starts, strict=True)), edges


def test_detector_ignores_quiet_tone():
    det = MarkerDetector(RATE)
    quiet = (marker_tone(RATE).astype(np.float64) * 0.05).astype(np.int16)
    assert all(det.feed(f, 0.0) is None for f in _frames(np.concatenate([quiet, np.zeros(FRAME, np.int16)])))


def test_matcher_rtts_loss_and_spurious():
    m = MarkerMatcher(timeout_s=1.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        m.on_sent(t)
    assert m.on_detected(0.12) == 120.0
    assert m.on_detected(2.25) is not None  # marker at 2.0; marker at 1.0 never came back
    assert m.on_detected(2.30) is None  # second edge for the same marker: spurious
    assert round(m.rtts_ms[1]) == 250
    assert m.spurious == 1
    assert m.due(3.5) == 3 and m.lost(3.5) == 1  # the 3.0 marker is not due yet
    assert m.lost(4.5) == 2


def test_late_echo_is_not_taken_for_the_next_marker():
    m = MarkerMatcher(timeout_s=1.0)
    m.on_sent(0.0, kind=0)
    m.on_sent(1.0, kind=1)
    # marker 0's echo arrives 1.05 s late: same tone as marker 0 only, too late -> no match, not a 50 ms RTT
    assert m.on_detected(1.05, kind=0) is None
    assert m.on_detected(1.08, kind=1) == pytest.approx(80.0)
    assert m.rtts_ms == [pytest.approx(80.0)] and m.spurious == 1
