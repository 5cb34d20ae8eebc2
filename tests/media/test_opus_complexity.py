"""Opus encoder complexity for the downlink: cost per 20 ms frame and a quality proxy.

The microbenchmark runs once as a plain test (``--benchmark-disable`` in pyproject);
the numbers in docs/media.md come from::

    pytest tests/media/test_opus_complexity.py --benchmark-enable --benchmark-only -q
    python -m bench.opus_quality

The quality test pins the choice of ``Settings.opus_complexity``: it is the lowest
complexity whose log-spectral distance on espeak-ng speech is within
``LSD_MARGIN_DB`` of complexity 10's, so a libopus change that moves the step
makes this fail and the default gets re-measured.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bench import opus_quality as oq
from relay.media.opus import OpusEncoder
from relay.settings import Settings


@functools.lru_cache(maxsize=1)
def speech() -> np.ndarray:
    return oq.speech_24k()


@functools.cache
def lsd(complexity: int) -> float:
    out, _ = oq.round_trip(speech(), complexity)
    return oq.lsd_db(speech(), out)


@pytest.mark.parametrize("complexity", range(11))
def test_encode_one_frame(benchmark, complexity: int) -> None:
    pcm = speech().astype("<i2").tobytes()
    fb = oq.FRAME_SAMPLES * 2
    frames = [pcm[i:i + fb] for i in range(0, len(pcm), fb)]
    voiced = [f for f in frames if np.abs(np.frombuffer(f, "<i2")).max() > 1000]
    enc = OpusEncoder(oq.RATE_HZ, bitrate_bps=oq.BITRATE_BPS, complexity=complexity)
    it = iter(range(1 << 62))

    def one() -> bytes:
        return enc.encode(voiced[next(it) % len(voiced)])

    payload = benchmark(one)
    assert 0 < len(payload) <= 1275


def test_round_trip_of_speech_is_close_at_every_complexity() -> None:
    # sanity of the proxy itself: the codec output is speech-shaped, not noise (LSD of noise is > 10 dB)
    for c in (0, 10):
        assert lsd(c) < 4.0
    noise = np.random.default_rng(1).normal(0, 2500, len(speech())).astype(np.int16)
    assert oq.lsd_db(speech(), noise) > 8.0


def test_default_complexity_is_the_cheapest_within_the_quality_margin() -> None:
    default = Settings().opus_complexity
    assert lsd(default) - lsd(10) <= oq.LSD_MARGIN_DB
    if default > 0:
        assert lsd(default - 1) - lsd(10) > oq.LSD_MARGIN_DB
