from libc.stdint cimport int16_t, int64_t, uint8_t

cdef int16_t load_s16(const uint8_t* p) noexcept nogil
cdef void store_s16(uint8_t* p, int v) noexcept nogil
cdef int64_t sum_squares(const uint8_t* p, Py_ssize_t n) noexcept nogil
