from libc.stdint cimport int64_t, uint32_t


cdef struct RtpHeader:
    int payload_type
    int marker
    int sequence_number
    uint32_t timestamp
    uint32_t ssrc
    Py_ssize_t payload_offset
    Py_ssize_t payload_bytes


cdef int rtp_header(const unsigned char* p, Py_ssize_t n, RtpHeader* h) noexcept nogil


cdef class StreamStats:
    cdef public object base_seq
    cdef public object max_seq
    cdef public int64_t cycles
    cdef public int64_t packets_received
    cdef int _clockrate
    cdef int64_t _jitter_q4
    cdef int64_t _last_arrival
    cdef int64_t _last_timestamp
    cdef bint _has_timestamp
    cdef int _base
    cdef int _max
    cdef int64_t _expected_prior
    cdef int64_t _received_prior
    cpdef update(self, int sequence_number, int64_t timestamp, double now_s)
