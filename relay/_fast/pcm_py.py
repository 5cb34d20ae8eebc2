"""PCM16 helpers for the hot path, pure-Python reference twin of ``pcm.pyx``.

All functions take mono (or, where named, interleaved stereo) PCM16
little-endian ``bytes``; a length that is not a whole number of samples
(frames for stereo) raises ``ValueError``.

* ``rms_dbfs``: ``10*log10(mean(s^2) / 32768^2)``, i.e. dB relative to a
  full-scale *square* wave (a full-scale sine reads -3.01 dBFS); floored at
  ``SILENCE_DBFS`` (-120.0) for silence and for empty input.
* ``audio_level_dbov``: exactly aiortc's ``rtp.compute_audio_level_dbov``
  (RFC 6465 appendix A): an int in [-127, 0] (0 = loudest; the RFC 6464 wire
  level is its negation); empty input gives -127.
"""

from __future__ import annotations

import math
from array import array
from sys import byteorder

from relay._fast._bytes import as_bytes

SILENCE_DBFS = -120.0
_SWAP = byteorder != "little"


def _samples(pcm16: bytes, frame_bytes: int = 2) -> array:
    pcm16 = as_bytes(pcm16)
    if len(pcm16) % frame_bytes:
        raise ValueError(f"pcm16 length {len(pcm16)} is not a multiple of {frame_bytes} bytes")
    a = array("h")
    a.frombytes(pcm16)
    if _SWAP:
        a.byteswap()
    return a


def _pack(a: array) -> bytes:
    if _SWAP:
        a.byteswap()
    return a.tobytes()


def rms_dbfs(pcm16: bytes) -> float:
    a = _samples(pcm16)
    n = len(a)
    if n == 0:
        return SILENCE_DBFS
    ss = 0
    for s in a:
        ss += s * s
    if ss == 0:
        return SILENCE_DBFS
    db = 10.0 * math.log10(float(ss) / n / 1073741824.0)
    return db if db > SILENCE_DBFS else SILENCE_DBFS


def peak_abs(pcm16: bytes) -> int:
    a = _samples(pcm16)
    peak = 0
    for s in a:
        if s < 0:
            s = -s
        if s > peak:
            peak = s
    return peak


def _check_factor(factor: float) -> float:
    f = float(factor)
    if not math.isfinite(f):
        raise ValueError(f"gain factor must be finite, got {factor!r}")
    return f


def gain(pcm16: bytes, factor: float) -> bytes:
    """Scale by ``factor``, rounding half up (``floor(s*factor + 0.5)``) and saturating to int16."""
    f = _check_factor(factor)
    a = _samples(pcm16)
    out = array("h", bytes(len(a) * 2))
    floor = math.floor
    for i, s in enumerate(a):
        v = floor(s * f + 0.5)
        out[i] = 32767 if v > 32767 else (-32768 if v < -32768 else v)
    return _pack(out)


def stereo_to_mono(pcm16_interleaved: bytes) -> bytes:
    """Average left and right, rounding toward minus infinity (``(l + r) >> 1``)."""
    a = _samples(pcm16_interleaved, 4)
    out = array("h", [(a[i] + a[i + 1]) >> 1 for i in range(0, len(a), 2)])
    return _pack(out)


def mono_to_stereo(pcm16: bytes) -> bytes:
    a = _samples(pcm16)
    out = array("h", bytes(len(a) * 4))
    out[0::2] = a
    out[1::2] = a
    return _pack(out)


def audio_level_dbov(pcm16: bytes) -> int:
    a = _samples(pcm16)
    n = len(a)
    if n == 0:
        return -127
    rms = 0.0
    for s in a:
        rms += s * s
    rms = math.sqrt(rms / (n * 32767 * 32767))
    if rms > 0:
        db = 20 * math.log10(rms)
        db = max(db, -127)
        db = min(db, 0)
    else:
        db = -127
    return round(db)
