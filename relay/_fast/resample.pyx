# cython: language_level=3
"""Streaming polyphase resampler (compiled twin of ``resample_py``; see it for the semantics).

Integer arithmetic on the shared coefficient table of ``_design``: int16
samples times Q24 int32 coefficients, summed exactly in int64, rounded half up
and saturated, so it is bit-exact with the reference twin.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove, memset

from relay._fast._design import COEF_FRAC_BITS, design

cdef int _FRAC = COEF_FRAC_BITS
cdef int64_t _ROUND = (<int64_t>1) << (COEF_FRAC_BITS - 1)


cdef class Resampler:
    def __cinit__(self, *args, **kwargs):
        self._coefs = NULL
        self._offs = NULL
        self._nnz = NULL
        self._x = NULL
        self._x_cap = 0

    def __init__(self, int in_rate_hz, int out_rate_hz):
        d = design(in_rate_hz, out_rate_hz)
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._up = d.up
        self._down = d.down
        self._k = d.taps_per_phase
        self._delay = d.delay_up
        self._identity = d.up == d.down
        # per phase, only the non-zero taps (a cutoff at the lower Nyquist makes
        # every L-th (or M-th) prototype tap zero): skipping exact zeros leaves
        # the integer sum, hence bit-exactness with the twin, unchanged
        cdef Py_ssize_t p, t, j, n = len(d.coefs), k = d.taps_per_phase
        free(self._coefs)
        free(self._offs)
        free(self._nnz)
        self._coefs = <int32_t*>malloc(n * sizeof(int32_t))
        self._offs = <int32_t*>malloc(n * sizeof(int32_t))
        self._nnz = <int32_t*>malloc(d.up * sizeof(int32_t))
        if self._coefs == NULL or self._offs == NULL or self._nnz == NULL:
            raise MemoryError()
        for p in range(d.up):
            j = 0
            for t in range(k):
                c = d.coefs[p * k + t]
                if c:
                    self._coefs[p * k + j] = c
                    self._offs[p * k + j] = t
                    j += 1
            self._nnz[p] = j
        self._ensure(960)
        self.reset()

    def __dealloc__(self):
        free(self._coefs)
        free(self._offs)
        free(self._nnz)
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
            memset(self._x, 0, (self._k - 1) * sizeof(int16_t))
        self._q = self._delay
        self._pending = -1

    cdef int _ensure(self, Py_ssize_t n_new) except -1:
        cdef Py_ssize_t need = self._k - 1 + n_new
        cdef int16_t* p
        if need <= self._x_cap:
            return 0
        if need < 2 * self._x_cap:
            need = 2 * self._x_cap
        p = <int16_t*>realloc(self._x, need * sizeof(int16_t))
        if p == NULL:
            raise MemoryError()
        self._x = p
        self._x_cap = need
        return 0

    cdef bytes _run(self, Py_ssize_t n_new, Py_ssize_t stop_q):
        cdef Py_ssize_t up = self._up, down = self._down, k = self._k
        cdef Py_ssize_t limit = n_new * up
        if 0 <= stop_q < limit:
            limit = stop_q
        cdef Py_ssize_t q = self._q
        cdef Py_ssize_t count = (limit - q + down - 1) // down if q < limit else 0
        cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 * count)
        cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
        cdef const int16_t* x = self._x
        cdef const int32_t* h
        cdef const int32_t* off
        cdef const int16_t* xb
        cdef Py_ssize_t m, i, t, p, nnz
        cdef int64_t acc
        cdef uint16_t u
        for m in range(count):
            i = q // up
            p = q - i * up
            h = self._coefs + p * k
            off = self._offs + p * k
            nnz = self._nnz[p]
            xb = x + i
            acc = 0
            for t in range(nnz):
                acc += <int64_t>xb[off[t]] * h[t]
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
        if n_new and k > 1:
            memmove(self._x, self._x + n_new, (k - 1) * sizeof(int16_t))
        return out

    def process(self, pcm16) -> bytes:
        cdef const uint8_t[::1] view = pcm16
        cdef Py_ssize_t nbytes = view.shape[0]
        cdef Py_ssize_t total = nbytes + (1 if self._pending >= 0 else 0)
        cdef Py_ssize_t n_new = total // 2, j, src
        cdef int16_t* dst
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
                buf[j:] = view[src:src + 2 * n_new - j]
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
        dst = self._x + self._k - 1
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
        memset(self._x + self._k - 1, 0, z * sizeof(int16_t))
        tail = self._run(z, self._delay)
        self.reset()
        return tail
