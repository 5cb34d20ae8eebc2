"""Resampler: compiled == reference, chunking invariance, rate law, DC/saturation, filter quality."""

from __future__ import annotations

import itertools
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay._fast import resample, resample_py
from relay._fast._design import PASSBAND_EDGE, RATES_HZ, STOPBAND_EDGE, design

PAIRS = list(itertools.product(RATES_HZ, RATES_HZ))
RESAMPLING_PAIRS = [p for p in PAIRS if p[0] != p[1]]
pairs = st.sampled_from(PAIRS)
HYP = settings(max_examples=60, deadline=None)


def run_chunks(r, data: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    """Feed ``data`` split at ``cuts``; return (streamed output, flush tail)."""
    out = []
    prev = 0
    for c in sorted(cuts) + [len(data)]:
        c = min(c, len(data))
        out.append(r.process(data[prev:c]))
        prev = max(prev, c)
    return b"".join(out), r.flush()


def law(in_hz: int, out_hz: int, n: int) -> tuple[int, int]:
    """(streaming total, total after flush) in samples for ``n`` input samples."""
    d = design(in_hz, out_hz)
    if d.up == d.down:
        return n, n
    streaming = max(0, -((d.delay_up - n * d.up) // d.down))  # ceil((n*L - D) / M)
    return streaming, -((-n * out_hz) // in_hz)  # ceil(n * out / in)


@pytest.mark.parametrize("bad", [(44100, 48000), (48000, 0), (16000, "24000"), (True, 8000)])
def test_rejects_unsupported_rates(impl, bad) -> None:
    with pytest.raises((ValueError, TypeError)):
        impl.Resampler(*bad)


@HYP
@given(pair=pairs, data=st.binary(max_size=1500), cuts=st.lists(st.integers(0, 1500), max_size=6))
def test_compiled_equals_reference(pair, data, cuts) -> None:
    c = resample.Resampler(*pair)
    p = resample_py.Resampler(*pair)
    assert run_chunks(c, data, cuts) == run_chunks(p, data, cuts)
    # a second stream after flush() (which resets) matches too
    assert run_chunks(c, data[::-1], []) == run_chunks(p, data[::-1], [])


@HYP
@given(pair=pairs, data=st.binary(max_size=1500), cuts=st.lists(st.integers(0, 1500), max_size=8))
def test_chunking_does_not_change_output(impl, pair, data, cuts) -> None:
    whole = run_chunks(impl.Resampler(*pair), data, [])
    assert run_chunks(impl.Resampler(*pair), data, cuts) == whole


@HYP
@given(pair=pairs, n=st.integers(0, 700), chunk=st.integers(1, 400))
def test_rate_law(impl, pair, n, chunk) -> None:
    r = impl.Resampler(*pair)
    data = struct.pack(f"<{n}h", *((i * 7919) % 20000 - 10000 for i in range(n)))
    streamed = b"".join(r.process(data[i : i + 2 * chunk]) for i in range(0, len(data), 2 * chunk))
    tail = r.flush()
    want_streaming, want_total = law(*pair, n)
    assert len(streamed) == 2 * want_streaming
    assert len(streamed) + len(tail) == 2 * want_total
    # after flush the total is round(n*out/in) within one sample
    assert abs((len(streamed) + len(tail)) // 2 - n * pair[1] / pair[0]) < 1


def test_odd_byte_is_carried(impl) -> None:
    data = struct.pack("<6h", 1000, -2000, 3000, -4000, 5000, -6000)
    r1 = impl.Resampler(16000, 16000)
    assert r1.process(data[:3]) == data[:2]
    assert r1.process(data[3:]) == data[2:]
    r2 = impl.Resampler(16000, 48000)
    assert r2.process(data[:5]) + r2.process(data[5:]) + r2.flush() == (lambda r: r.process(data) + r.flush())(
        impl.Resampler(16000, 48000)
    )


def test_reset_discards_state(impl) -> None:
    noise = bytes(range(256)) * 4
    r = impl.Resampler(24000, 16000)
    r.process(noise)
    r.reset()
    fresh = impl.Resampler(24000, 16000)
    tone = struct.pack("<200h", *(int(8000 * math.sin(i / 5)) for i in range(200)))
    assert r.process(tone) + r.flush() == fresh.process(tone) + fresh.flush()


@pytest.mark.parametrize("pair", RESAMPLING_PAIRS, ids=lambda p: f"{p}")
def test_dc_gain_is_exactly_one(impl, pair) -> None:
    r = impl.Resampler(*pair)
    n = 600
    out = r.process(struct.pack(f"<{n}h", *([-12345] * n)))
    samples = struct.unpack(f"<{len(out) // 2}h", out)
    settled = samples[len(samples) // 2 :]
    assert settled and set(settled) == {-12345}


@pytest.mark.parametrize("pair", [(8000, 48000), (48000, 8000), (16000, 24000)])
def test_full_scale_square_saturates_without_wrapping(impl, pair) -> None:
    in_hz, out_hz = pair
    period = in_hz // 100  # 100 Hz square wave, full scale
    n = 2 * period
    x = [32767 if (i % period) < period // 2 else -32768 for i in range(n)]
    r = impl.Resampler(in_hz, out_hz)
    y = np.frombuffer(r.process(struct.pack(f"<{n}h", *x)) + r.flush(), dtype="<i2").astype(int)
    t_in = np.arange(len(y)) * in_hz / out_hz  # output sample time in input samples (zero-phase)
    phase = (t_in % period) / period
    # well inside each half period the output sits at the rail, never wrapped to the other sign
    high = (phase > 0.1) & (phase < 0.4)
    low = (phase > 0.6) & (phase < 0.9)
    assert high.any() and low.any()
    assert (y[high] > 16384).all()  # Gibbs ringing dips ~10 % below the rail; a wrap would go negative
    assert (y[low] < -16384).all()
    assert (y == 32767).any() and (y == -32768).any()  # the overshoot was clipped, not wrapped


# -- filter quality (compiled only: the twin is bit-identical, proven above) -------------------

AMP = 20000.0
RIPPLE_DB = 0.01
ATTENUATION_DB = 80.0


def _tone(rate_hz: int, f_hz: float, dur_s: float = 0.2) -> bytes:
    t = np.arange(int(rate_hz * dur_s)) / rate_hz
    return np.round(AMP * np.sin(2 * np.pi * f_hz * t)).astype("<i2").tobytes()


def _resample(pair, data: bytes) -> np.ndarray:
    r = resample.Resampler(*pair)
    return np.frombuffer(r.process(data) + r.flush(), dtype="<i2").astype(np.float64)


def _fit(y: np.ndarray, f_hz: float, rate_hz: int, skip: int) -> tuple[float, float]:
    """Least-squares sine at f_hz on the settled part: (amplitude, rms of the residual)."""
    seg = y[skip : len(y) - skip]
    t = np.arange(skip, len(y) - skip) / rate_hz
    basis = np.stack([np.sin(2 * np.pi * f_hz * t), np.cos(2 * np.pi * f_hz * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
    return float(np.hypot(*coef)), float(np.sqrt(np.mean((seg - basis @ coef) ** 2)))


def measure(pair) -> tuple[float, float]:
    """(passband ripple dB, worst spurious level dB re the tone: images, aliases, rounding noise)."""
    in_hz, out_hz = pair
    low = min(pair)
    skip = out_hz // 100
    gains_db, spurious_db = [], []
    for f in np.linspace(20, PASSBAND_EDGE * low, 25):
        amp, residual = _fit(_resample(pair, _tone(in_hz, f)), f, out_hz, skip)
        gains_db.append(20 * math.log10(amp / AMP))
        spurious_db.append(20 * math.log10(max(residual, 1e-9) / (AMP / math.sqrt(2))))
    if in_hz > out_hz:  # tones in the stopband must not alias into the output
        for f in np.linspace(STOPBAND_EDGE * low, in_hz / 2 * 0.999, 25):
            y = _resample(pair, _tone(in_hz, f))[skip:-skip]
            spurious_db.append(20 * math.log10(max(float(np.sqrt(np.mean(y**2))), 1e-9) / (AMP / math.sqrt(2))))
    return max(gains_db) - min(gains_db), max(spurious_db)


@pytest.mark.parametrize("pair", RESAMPLING_PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
def test_passband_ripple_and_stopband_attenuation(pair) -> None:
    ripple_db, spurious_db = measure(pair)
    assert ripple_db <= RIPPLE_DB
    assert spurious_db <= -ATTENUATION_DB


def test_quality_measure_detects_a_bad_filter() -> None:
    # the measurement itself can fail: naive decimation (dropping samples) aliases badly
    f = 0.7 * 24000 / 2 + 2000
    x = np.frombuffer(_tone(48000, f), dtype="<i2")[::2].astype(np.float64)
    level_db = 20 * math.log10(float(np.sqrt(np.mean(x**2))) / (AMP / math.sqrt(2)))
    assert level_db > -ATTENUATION_DB


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
def test_compiled_equals_reference_every_pair(pair) -> None:
    # deterministic companion of the Hypothesis test: every rate pair, loud random input, ragged chunks
    rng = np.random.default_rng(sum(pair))
    data = rng.integers(-32768, 32768, 1500).astype("<i2").tobytes() + b"\x7f"
    cuts = sorted(rng.integers(0, len(data), 9).tolist())
    c, p = resample.Resampler(*pair), resample_py.Resampler(*pair)
    assert run_chunks(c, data, cuts) == run_chunks(p, data, cuts)
