"""Resampler filter design, shared by the compiled and the pure-Python resampler.

Both implementations run the same integer arithmetic on the same integer
coefficient table, so they are bit-exact by construction. Only the design
(done once per rate pair, cached) uses floating point.

Design (see docs/fast.md for the measured numbers):

* rational ratio ``L/M = out_rate_hz/in_rate_hz`` (reduced), polyphase FIR;
* prototype: windowed sinc at ``L * in_rate_hz``, cutoff at the Nyquist
  frequency of the lower rate, Kaiser window;
* band edges: passband to ``0.45 * min(rate)``, stopband from
  ``0.55 * min(rate)`` (aliasing is confined to the transition band above the
  passband), designed for ``ATTENUATION_DB`` of stopband attenuation;
* each polyphase branch is normalised to a DC gain of exactly 1 and quantised
  to ``COEF_FRAC_BITS`` fractional bits; accumulation is exact (64-bit
  integer), the output is rounded half up and saturated to int16.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

RATES_HZ = (8000, 16000, 24000, 48000)
ATTENUATION_DB = 80.0
PASSBAND_EDGE = 0.45  # fraction of the lower sample rate
STOPBAND_EDGE = 0.55  # fraction of the lower sample rate
COEF_FRAC_BITS = 24


@dataclass(frozen=True)
class FilterDesign:
    up: int  # L
    down: int  # M
    taps_per_phase: int  # K
    delay_up: int  # group delay of the prototype, in samples at L * in_rate_hz
    coefs: tuple[int, ...]  # L * K ints, phase-major; see resample_py for the indexing


def check_rates(in_rate_hz: int, out_rate_hz: int) -> None:
    for name, rate in (("in_rate_hz", in_rate_hz), ("out_rate_hz", out_rate_hz)):
        if not isinstance(rate, int) or isinstance(rate, bool) or rate not in RATES_HZ:
            raise ValueError(f"{name} must be one of {RATES_HZ}, got {rate!r}")


def _bessel_i0(x: float) -> float:
    total = 1.0
    term = 1.0
    k = 1
    half = x / 2.0
    while term > 1e-21 * total:
        term *= (half / k) ** 2
        total += term
        k += 1
    return total


@functools.cache
def design(in_rate_hz: int, out_rate_hz: int) -> FilterDesign:
    check_rates(in_rate_hz, out_rate_hz)
    g = math.gcd(in_rate_hz, out_rate_hz)
    up, down = out_rate_hz // g, in_rate_hz // g
    if up == down:
        return FilterDesign(1, 1, 1, 0, (1 << COEF_FRAC_BITS,))
    proto_rate_hz = up * in_rate_hz
    low_hz = min(in_rate_hz, out_rate_hz)
    transition_hz = (STOPBAND_EDGE - PASSBAND_EDGE) * low_hz
    cutoff_hz = 0.5 * (STOPBAND_EDGE + PASSBAND_EDGE) * low_hz
    a = ATTENUATION_DB
    beta = 0.1102 * (a - 8.7)
    n = int(math.ceil((a - 7.95) / (2.285 * 2.0 * math.pi * transition_hz / proto_rate_hz))) + 1
    if n % 2 == 0:
        n += 1
    delay = (n - 1) // 2
    fc = cutoff_hz / proto_rate_hz  # cycles per prototype sample
    i0_beta = _bessel_i0(beta)
    proto = []
    for i in range(n):
        t = i - delay
        sinc = 2.0 * fc if t == 0 else math.sin(2.0 * math.pi * fc * t) / (math.pi * t)
        r = (2.0 * i / (n - 1)) - 1.0
        w = _bessel_i0(beta * math.sqrt(max(0.0, 1.0 - r * r))) / i0_beta
        proto.append(sinc * w)
    k_taps = -(-n // up)
    proto += [0.0] * (k_taps * up - n)
    one = 1 << COEF_FRAC_BITS
    coefs: list[int] = []
    for p in range(up):
        branch = [proto[p + (k_taps - 1 - t) * up] for t in range(k_taps)]
        s = sum(branch)
        q = [int(round(c / s * one)) for c in branch]
        # make the branch's DC gain exactly 1: put the rounding residue on its largest tap
        big = max(range(k_taps), key=lambda j: abs(q[j]))
        q[big] += one - sum(q)
        coefs.extend(q)
    return FilterDesign(up, down, k_taps, delay, tuple(coefs))
