cdef class Resampler:
    cdef readonly int in_rate_hz
    cdef readonly int out_rate_hz
    cdef Py_ssize_t _up
    cdef Py_ssize_t _down
    cdef Py_ssize_t _k
    cdef Py_ssize_t _hist
    cdef Py_ssize_t _delay
    cdef bint _identity
    cdef double* _coefs
    cdef Py_ssize_t _stride
    cdef Py_ssize_t* _start
    cdef Py_ssize_t* _len
    cdef Py_ssize_t* _step
    cdef Py_ssize_t* _extra
    cdef double* _extra_c
    cdef double* _x
    cdef Py_ssize_t _x_cap
    cdef Py_ssize_t _q
    cdef int _pending

    cdef int _ensure(self, Py_ssize_t n_new) except -1
    cdef bytes _run(self, Py_ssize_t n_new, Py_ssize_t stop_q)
