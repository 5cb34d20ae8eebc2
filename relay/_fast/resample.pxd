from libc.stdint cimport int16_t, int32_t


cdef class Resampler:
    cdef readonly int in_rate_hz
    cdef readonly int out_rate_hz
    cdef Py_ssize_t _up
    cdef Py_ssize_t _down
    cdef Py_ssize_t _k
    cdef Py_ssize_t _delay
    cdef bint _identity
    cdef int32_t* _coefs
    cdef int32_t* _offs
    cdef int32_t* _nnz
    cdef int16_t* _x
    cdef Py_ssize_t _x_cap
    cdef Py_ssize_t _q
    cdef int _pending

    cdef int _ensure(self, Py_ssize_t n_new) except -1
    cdef bytes _run(self, Py_ssize_t n_new, Py_ssize_t stop_q)
