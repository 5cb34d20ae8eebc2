from libc.stdint cimport int64_t, uintptr_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double monotonic_s() noexcept nogil:
    """``time.perf_counter()`` (CLOCK_MONOTONIC on Linux)."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef struct Held:  # one packet held ahead of the expected sequence number
    int seq
    double arrival
    Py_ssize_t length
    Py_ssize_t capacity
    unsigned char* data


cdef class UplinkAssembler:
    cdef object _decoder  # the OpusDecoder (None: G.711); kept alive while its state is used
    cdef void* _dec  # its OpusDecoder* (NULL once closed)
    cdef void* _decode_fn
    cdef int _conceal_samples
    cdef int _max_samples
    cdef unsigned char _silence
    cdef readonly Py_ssize_t chunk_bytes
    cdef object _on_chunk
    cdef int _max_hold
    cdef int _max_conceal
    cdef double _rate
    cdef double _burst
    cdef double _tokens
    cdef double _last
    cdef bint _has_last
    cdef int _expected  # -1: no packet yet
    cdef Held* _held
    cdef int _nheld
    cdef unsigned char* _buf
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef object _error
    cdef readonly bint closed
    cdef public int64_t packets
    cdef public int64_t flood
    cdef public int64_t late
    cdef public int64_t lost
    cdef public int64_t bad
    cdef public int64_t direct

    cdef int push_packet(self, int seq, const unsigned char* data, Py_ssize_t length, double now,
                         bint direct) except -1
    cdef int _push_py(self, seq, payload, arrival_s, bint direct) except -1
    cdef int _find(self, int seq) noexcept
    cdef int _drain_held(self) except -1
    cdef int _skip_gap(self, double now) except -1
    cdef int _reserve(self, Py_ssize_t extra) except -1
    cdef int _decode(self, const unsigned char* data, Py_ssize_t length, int frame_size, int fec) except -1
    cdef int _recover(self, const unsigned char* data, Py_ssize_t length, double now) except -1
    cdef int _conceal(self, double now) except -1
    cdef int _consume(self, const unsigned char* data, Py_ssize_t length, double arrival) except -1
    cdef int _emit(self, double arrival) except -1
