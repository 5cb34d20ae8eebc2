# cython: language_level=3
"""Streaming polyphase resampler (compiled twin of ``resample_py``; see it for the semantics).

Bit-exact with the reference twin: both compute, for every output sample, the
exact integer ``sum(x[t] * c[t])`` of int16 samples and the Q24 integer
coefficients of ``_design``, then round half up and saturate. Here the sum is
formed in double precision with four independent accumulators (so the compiler
can pipeline/vectorise it): every product is below 2**40 and every partial sum
below 2**53, so each double operation is exact and the result does not depend
on the summation order. Leading/trailing zero taps of each branch are skipped.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from relay._fast._buffer cimport as_bytes, bytes_ptr
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove, memset

from relay._fast._design import COEF_FRAC_BITS, design

cdef int _FRAC = COEF_FRAC_BITS
cdef int64_t _ROUND = (<int64_t>1) << (COEF_FRAC_BITS - 1)
cdef enum:
    PAD = 6  # extra history so every branch can be padded on the left to a multiple of 4 taps (step <= 2)


cdef class Resampler:
    def __cinit__(self, *args, **kwargs):
        self._coefs = NULL
        self._start = NULL
        self._len = NULL
        self._step = NULL
        self._extra = NULL
        self._extra_c = NULL
        self._x = NULL
        self._x_cap = 0

    def __init__(self, int in_rate_hz, int out_rate_hz):
        d = design(in_rate_hz, out_rate_hz)
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._up = d.up
        self._down = d.down
        self._k = d.taps_per_phase
        self._hist = d.taps_per_phase - 1 + PAD
        self._delay = d.delay_up
        self._identity = d.up == d.down
        cdef Py_ssize_t p, t, first, last, n, step, k = d.taps_per_phase
        cdef Py_ssize_t stride = k + PAD
        coefs = d.coefs
        for c in coefs:  # the exactness argument above needs |c| <= 2**25
            if abs(c) > (1 << 25):
                raise ValueError("resampler coefficient out of range")
        self._stride = stride
        self._coefs = <double*>malloc(d.up * stride * sizeof(double))
        self._start = <Py_ssize_t*>malloc(d.up * sizeof(Py_ssize_t))
        self._len = <Py_ssize_t*>malloc(d.up * sizeof(Py_ssize_t))
        self._step = <Py_ssize_t*>malloc(d.up * sizeof(Py_ssize_t))
        self._extra = <Py_ssize_t*>malloc(d.up * sizeof(Py_ssize_t))
        self._extra_c = <double*>malloc(d.up * sizeof(double))
        if (self._coefs == NULL or self._start == NULL or self._len == NULL
                or self._step == NULL or self._extra == NULL or self._extra_c == NULL):
            raise MemoryError()
        memset(self._coefs, 0, d.up * stride * sizeof(double))
        for p in range(d.up):
            branch = coefs[p * k:(p + 1) * k]
            first = 0
            while first < k - 1 and branch[first] == 0:
                first += 1
            last = k - 1
            while last > first and branch[last] == 0:
                last -= 1
            # half-band branches (decimation by 2): every other tap is zero except the centre one;
            # then run over every 2nd tap and add the centre tap separately
            off_parity = [t for t in range(first, last + 1) if (t - first) % 2 and branch[t] != 0]
            step = 2 if last - first >= 8 and len(off_parity) == 1 else 1
            self._step[p] = step
            self._extra[p] = -1
            self._extra_c[p] = 0.0
            if step == 2:
                self._extra[p] = off_parity[0] + PAD
                self._extra_c[p] = <double>branch[off_parity[0]]
            n = (last - first) // step + 1
            first -= step * ((4 - n % 4) % 4)  # pad on the left with zero taps (>= -PAD)
            n = (last - first) // step + 1
            self._start[p] = first + PAD  # index into the history-prefixed buffer, relative to i
            self._len[p] = n
            for t in range(n):
                if first + step * t >= 0:
                    self._coefs[p * stride + t] = <double>branch[first + step * t]
        self._ensure(960)
        self.reset()

    def __dealloc__(self):
        free(self._coefs)
        free(self._start)
        free(self._len)
        free(self._step)
        free(self._extra)
        free(self._extra_c)
        free(self._x)

    @property
    def delay_up(self) -> int:
        """Filter group delay in samples at ``L * in_rate_hz`` (0 for identity)."""
        return self._delay

    @property
    def latency_in_samples(self) -> float:
        """Input lookahead the stream holds back, in input samples (``delay_up / L``)."""
        return self._delay / self._up

    def reset(self) -> None:
        if self._x != NULL:
            memset(self._x, 0, self._hist * sizeof(double))
        self._q = self._delay
        self._pending = -1

    cdef int _ensure(self, Py_ssize_t n_new) except -1:
        cdef Py_ssize_t need = self._hist + n_new
        cdef double* p
        if need <= self._x_cap:
            return 0
        if need < 2 * self._x_cap:
            need = 2 * self._x_cap
        p = <double*>realloc(self._x, need * sizeof(double))
        if p == NULL:
            raise MemoryError()
        self._x = p
        self._x_cap = need
        return 0

    cdef bytes _run(self, Py_ssize_t n_new, Py_ssize_t stop_q):
        cdef Py_ssize_t up = self._up, down = self._down, stride = self._stride
        cdef Py_ssize_t limit = n_new * up
        if 0 <= stop_q < limit:
            limit = stop_q
        cdef Py_ssize_t q = self._q
        cdef Py_ssize_t count = (limit - q + down - 1) // down if q < limit else 0
        cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 * count)
        cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
        cdef const double* x = self._x
        cdef const double* h
        cdef const double* xb
        cdef Py_ssize_t m, i, t, p, n
        cdef double a0, a1, a2, a3
        cdef int64_t acc
        cdef uint16_t u
        for m in range(count):
            i = q // up
            p = q - i * up
            h = self._coefs + p * stride
            n = self._len[p]
            xb = x + i + self._start[p]
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            t = 0
            if self._step[p] == 1:
                while t < n:
                    a0 += xb[t] * h[t]
                    a1 += xb[t + 1] * h[t + 1]
                    a2 += xb[t + 2] * h[t + 2]
                    a3 += xb[t + 3] * h[t + 3]
                    t += 4
            else:
                while t < n:
                    a0 += xb[2 * t] * h[t]
                    a1 += xb[2 * t + 2] * h[t + 1]
                    a2 += xb[2 * t + 4] * h[t + 2]
                    a3 += xb[2 * t + 6] * h[t + 3]
                    t += 4
                a0 += x[i + self._extra[p]] * self._extra_c[p]
            acc = <int64_t>((a0 + a1) + (a2 + a3))
            acc = (acc + _ROUND) >> _FRAC
            if acc > 32767:
                acc = 32767
            elif acc < -32768:
                acc = -32768
            u = <uint16_t><int16_t>acc
            o[2 * m] = u & 0xFF
            o[2 * m + 1] = u >> 8
            q += down
        self._q = q - n_new * up
        if n_new:
            memmove(self._x, self._x + n_new, self._hist * sizeof(double))
        return out

    def process(self, pcm16) -> bytes:
        cdef bytes b = as_bytes(pcm16)
        cdef const uint8_t* view = bytes_ptr(b)
        cdef Py_ssize_t nbytes = len(b)
        cdef Py_ssize_t total = nbytes + (1 if self._pending >= 0 else 0)
        cdef Py_ssize_t n_new = total // 2, j, src
        cdef double* dst
        cdef bytearray buf
        if self._identity:
            buf = bytearray(2 * n_new)
            src = 0
            j = 0
            if self._pending >= 0 and n_new:
                buf[0] = self._pending
                buf[1] = view[0]
                src = 1
                j = 2
            if 2 * n_new > j:
                buf[j:] = b[src:src + 2 * n_new - j]
            if total % 2:
                self._pending = view[nbytes - 1] if nbytes else self._pending
            else:
                self._pending = -1
            return bytes(buf)
        if n_new == 0:
            if nbytes:
                self._pending = view[0]
            return b""
        self._ensure(n_new)
        dst = self._x + self._hist
        src = 0
        j = 0
        if self._pending >= 0:
            dst[0] = <int16_t><uint16_t>(self._pending | (view[0] << 8))
            src = 1
            j = 1
        while j < n_new:
            dst[j] = <int16_t><uint16_t>(view[src] | (view[src + 1] << 8))
            src += 2
            j += 1
        self._pending = view[nbytes - 1] if total % 2 else -1
        return self._run(n_new, -1)

    def flush(self) -> bytes:
        if self._identity:
            self.reset()
            return b""
        cdef Py_ssize_t z = self._delay // self._up + 1
        self._ensure(z)
        memset(self._x + self._hist, 0, z * sizeof(double))
        tail = self._run(z, self._delay)
        self.reset()
        return tail
