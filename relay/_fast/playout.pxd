from libc.stdint cimport uint8_t


cdef class _Item:
    cdef readonly str item_id
    cdef Py_ssize_t received
    cdef Py_ssize_t played
    cdef Py_ssize_t queued
    cdef bint finished


cdef class PlayoutBuffer:
    cdef Py_ssize_t _bpm
    cdef Py_ssize_t _frame_ms
    cdef Py_ssize_t _frame_bytes
    cdef Py_ssize_t _capacity_bytes
    cdef uint8_t _silence_byte
    cdef uint8_t* _buf
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _rd
    cdef Py_ssize_t _wr
    cdef object _queue
    cdef dict _items
    cdef Py_ssize_t _overflow

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef void _release(self) noexcept
    cdef bytes _take(self, Py_ssize_t n, Py_ssize_t frame)
    cdef _remember(self, _Item item)
