# cython: language_level=3
"""ITU-T G.711 mu-law and A-law, table-driven (compiled twin of ``g711_py``).

Bit-exact with ``audioop`` at width 2. The tables are computed at import with
the same algorithm as the reference twin.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from relay._fast._buffer cimport as_bytes, bytes_ptr
from libc.stdint cimport int16_t, uint8_t, uint16_t

cdef int16_t[8] _SEG_UEND = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]
cdef int16_t[8] _SEG_AEND = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]


cdef inline int _segment(int value, const int16_t* ends) noexcept nogil:
    cdef int i
    for i in range(8):
        if value <= ends[i]:
            return i
    return 8


cdef uint8_t _ulaw_enc(int sample) noexcept nogil:
    cdef int pcm = sample >> 2
    cdef int mask, seg
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    if pcm > 8159:
        pcm = 8159
    pcm += 0x84 >> 2
    seg = _segment(pcm, _SEG_UEND)
    if seg >= 8:
        return <uint8_t>(0x7F ^ mask)
    return <uint8_t>(((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask)


cdef int16_t _ulaw_dec(int code) noexcept nogil:
    cdef int u = (~code) & 0xFF
    cdef int t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return <int16_t>((0x84 - t) if (u & 0x80) else (t - 0x84))


cdef uint8_t _alaw_enc(int sample) noexcept nogil:
    cdef int pcm = sample >> 3
    cdef int mask, seg, aval
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _SEG_AEND)
    if seg >= 8:
        return <uint8_t>(0x7F ^ mask)
    aval = seg << 4
    if seg < 2:
        aval |= (pcm >> 1) & 0x0F
    else:
        aval |= (pcm >> seg) & 0x0F
    return <uint8_t>(aval ^ mask)


cdef int16_t _alaw_dec(int code) noexcept nogil:
    cdef int a = code ^ 0x55
    cdef int t = (a & 0x0F) << 4
    cdef int seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return <int16_t>(t if (a & 0x80) else -t)


cdef void _build_tables() noexcept nogil:
    cdef int s
    for s in range(65536):
        ULAW_ENC[s] = _ulaw_enc(<int16_t><uint16_t>s)
        ALAW_ENC[s] = _alaw_enc(<int16_t><uint16_t>s)
    for s in range(256):
        ULAW_DEC[s] = _ulaw_dec(s)
        ALAW_DEC[s] = _alaw_dec(s)


_build_tables()


cdef bytes _encode(object data, const uint8_t* table):
    cdef bytes b = as_bytes(data)
    cdef const uint8_t* pcm16 = bytes_ptr(b)
    cdef Py_ssize_t nbytes = len(b)
    if nbytes % 2:
        raise ValueError(f"pcm16 must hold whole 16-bit samples, got {nbytes} bytes")
    cdef Py_ssize_t n = nbytes // 2, i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    for i in range(n):
        o[i] = table[pcm16[2 * i] | (pcm16[2 * i + 1] << 8)]
    return out


cdef bytes _decode(object obj, const int16_t* table):
    cdef bytes b = as_bytes(obj)
    cdef const uint8_t* data = bytes_ptr(b)
    cdef Py_ssize_t n = len(b), i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    cdef uint16_t v
    for i in range(n):
        v = <uint16_t>table[data[i]]
        o[2 * i] = v & 0xFF
        o[2 * i + 1] = v >> 8
    return out


def ulaw_encode(pcm16) -> bytes:
    return _encode(pcm16, ULAW_ENC)


def alaw_encode(pcm16) -> bytes:
    return _encode(pcm16, ALAW_ENC)


def ulaw_decode(data) -> bytes:
    return _decode(data, ULAW_DEC)


def alaw_decode(data) -> bytes:
    return _decode(data, ALAW_DEC)
