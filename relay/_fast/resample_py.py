"""Streaming polyphase resampler, pure-Python reference twin of ``resample.pyx``.

Mono PCM16 little-endian in and out, rates 8000/16000/24000/48000 Hz.

Alignment: output sample ``m`` is the signal at time ``m / out_rate_hz``
(zero-phase: the filter's group delay is compensated), so it needs input up to
``delay_up / L`` input samples *ahead*. Hence, after ``n`` input samples:

* while streaming, the total output is ``max(0, ceil((n*L - D) / M))``
  samples, where ``L/M = out/in`` (reduced) and ``D = Resampler.delay_up``;
* after ``flush()`` the total is exactly ``ceil(n * out / in)``.

``flush()`` returns the tail (the input is padded with zeros) and resets the
stream. An odd trailing byte is carried to the next ``process()`` call (so
chunking never changes the output, even mid-sample); ``flush()`` drops it.
"""

from __future__ import annotations

from array import array
from sys import byteorder

from relay._fast._bytes import as_bytes
from relay._fast._design import COEF_FRAC_BITS, design

_ROUND = 1 << (COEF_FRAC_BITS - 1)
_SWAP = byteorder != "little"


class Resampler:
    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        d = design(in_rate_hz, out_rate_hz)
        self._in_rate_hz = in_rate_hz
        self._out_rate_hz = out_rate_hz
        self._up = d.up
        self._down = d.down
        self._k = d.taps_per_phase
        self._delay = d.delay_up
        self._identity = d.up == d.down
        self._phases = [d.coefs[p * d.taps_per_phase : (p + 1) * d.taps_per_phase] for p in range(d.up)]
        self.reset()

    @property
    def in_rate_hz(self) -> int:
        return self._in_rate_hz

    @property
    def out_rate_hz(self) -> int:
        return self._out_rate_hz

    @property
    def delay_up(self) -> int:
        """Filter group delay in samples at ``L * in_rate_hz`` (0 for identity)."""
        return self._delay

    @property
    def latency_in_samples(self) -> float:
        """Input lookahead the stream holds back, in input samples (``delay_up / L``)."""
        return self._delay / self._up

    def reset(self) -> None:
        self._hist = [0] * (self._k - 1)
        self._q = self._delay
        self._pending = b""

    def _samples(self, pcm16: bytes) -> list[int]:
        data = self._pending + as_bytes(pcm16)
        if len(data) % 2:
            self._pending = data[-1:]
            data = data[:-1]
        else:
            self._pending = b""
        a = array("h")
        a.frombytes(data)
        if _SWAP:
            a.byteswap()
        return a.tolist()

    def _run(self, new: list[int], stop_q: int | None) -> bytes:
        x = self._hist + new
        limit = len(new) * self._up
        if stop_q is not None:
            limit = min(limit, stop_q)
        q = self._q
        up, down, k = self._up, self._down, self._k
        phases = self._phases
        out = array("h")
        while q < limit:
            i = q // up
            h = phases[q - i * up]
            base = i  # buffer index of the oldest tap: (i + k - 1) - (k - 1)
            acc = 0
            for t in range(k):
                acc += x[base + t] * h[t]
            v = (acc + _ROUND) >> COEF_FRAC_BITS
            out.append(32767 if v > 32767 else (-32768 if v < -32768 else v))
            q += down
        self._q = q - len(new) * up
        if k > 1:
            self._hist = x[len(x) - (k - 1) :]
        if _SWAP:
            out.byteswap()
        return out.tobytes()

    def process(self, pcm16: bytes) -> bytes:
        if self._identity:
            data = self._pending + as_bytes(pcm16)
            if len(data) % 2:
                self._pending = data[-1:]
                return data[:-1]
            self._pending = b""
            return data
        new = self._samples(pcm16)
        if not new:
            return b""
        return self._run(new, None)

    def flush(self) -> bytes:
        if self._identity:
            self.reset()
            return b""
        zeros = [0] * (self._delay // self._up + 1)
        tail = self._run(zeros, self._delay)
        self.reset()
        return tail
