# cython: language_level=3
"""PCM16 helpers for the hot path (compiled twin of ``pcm_py``; see it for the semantics)."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from relay._fast._buffer cimport as_bytes, bytes_ptr
from libc.math cimport floor, isfinite, log10, rint, sqrt
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t

SILENCE_DBFS = -120.0
cdef double _SILENCE_DBFS = -120.0


cdef inline int16_t load_s16(const uint8_t* p) noexcept nogil:
    return <int16_t><uint16_t>(p[0] | (p[1] << 8))


cdef inline void store_s16(uint8_t* p, int v) noexcept nogil:
    cdef uint16_t u = <uint16_t><int16_t>v
    p[0] = u & 0xFF
    p[1] = u >> 8


cdef int64_t sum_squares(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef int64_t ss = 0
    cdef int s
    cdef Py_ssize_t i
    for i in range(n):
        s = load_s16(p + 2 * i)
        ss += s * s
    return ss


cdef inline Py_ssize_t _count(bytes pcm16, Py_ssize_t frame_bytes) except -1:
    cdef Py_ssize_t nbytes = len(pcm16)
    if nbytes % frame_bytes:
        raise ValueError(f"pcm16 length {nbytes} is not a multiple of {frame_bytes} bytes")
    return nbytes // 2


cdef inline const uint8_t* _ptr(bytes pcm16) noexcept:
    return bytes_ptr(pcm16)


def rms_dbfs(pcm16) -> float:
    pcm16 = as_bytes(pcm16)
    cdef Py_ssize_t n = _count(pcm16, 2)
    if n == 0:
        return SILENCE_DBFS
    cdef int64_t ss
    ss = sum_squares(_ptr(pcm16), n)
    if ss == 0:
        return SILENCE_DBFS
    cdef double db = 10.0 * log10(<double>ss / <double>n / 1073741824.0)
    return db if db > _SILENCE_DBFS else SILENCE_DBFS


def peak_abs(pcm16) -> int:
    pcm16 = as_bytes(pcm16)
    cdef Py_ssize_t n = _count(pcm16, 2), i
    cdef int peak = 0, s
    cdef const uint8_t* p = _ptr(pcm16)
    for i in range(n):
        s = load_s16(p + 2 * i)
        if s < 0:
            s = -s
        if s > peak:
            peak = s
    return peak


def gain(pcm16, double factor) -> bytes:
    """Scale by ``factor``, rounding half up (``floor(s*factor + 0.5)``) and saturating to int16."""
    pcm16 = as_bytes(pcm16)
    if not isfinite(factor):
        raise ValueError(f"gain factor must be finite, got {factor!r}")
    cdef Py_ssize_t n = _count(pcm16, 2), i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    cdef const uint8_t* p = _ptr(pcm16)
    cdef double v
    for i in range(n):
        v = floor(load_s16(p + 2 * i) * factor + 0.5)
        if v > 32767.0:
            v = 32767.0
        elif v < -32768.0:
            v = -32768.0
        store_s16(o + 2 * i, <int>v)
    return out


def stereo_to_mono(pcm16_interleaved) -> bytes:
    """Average left and right, rounding toward minus infinity (``(l + r) >> 1``)."""
    pcm16_interleaved = as_bytes(pcm16_interleaved)
    cdef Py_ssize_t n = _count(pcm16_interleaved, 4) // 2, i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    cdef const uint8_t* p = _ptr(pcm16_interleaved)
    cdef int v
    for i in range(n):
        v = load_s16(p + 4 * i) + load_s16(p + 4 * i + 2)
        store_s16(o + 2 * i, v >> 1)
    return out


def mono_to_stereo(pcm16) -> bytes:
    pcm16 = as_bytes(pcm16)
    cdef Py_ssize_t n = _count(pcm16, 2), i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 4 * n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    cdef const uint8_t* p = _ptr(pcm16)
    for i in range(n):
        o[4 * i] = p[2 * i]
        o[4 * i + 1] = p[2 * i + 1]
        o[4 * i + 2] = p[2 * i]
        o[4 * i + 3] = p[2 * i + 1]
    return out


def audio_level_dbov(pcm16) -> int:
    """Exactly aiortc's ``rtp.compute_audio_level_dbov``: an int in [-127, 0]; empty gives -127."""
    pcm16 = as_bytes(pcm16)
    cdef Py_ssize_t n = _count(pcm16, 2)
    if n == 0:
        return -127
    cdef int64_t ss
    ss = sum_squares(_ptr(pcm16), n)
    # aiortc: rms = sqrt(float_sum / (n * 32767 * 32767)); the int divisor converts exactly below 2**53
    cdef double rms = sqrt(<double>ss / <double>(<int64_t>n * 1073676289))
    cdef double db
    if rms > 0:
        db = 20 * log10(rms)
        if db < -127:
            db = -127
        if db > 0:
            db = 0
    else:
        db = -127
    return <int>rint(db)  # Python's round(): half to even
