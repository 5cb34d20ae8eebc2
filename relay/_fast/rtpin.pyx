# cython: language_level=3
"""Inbound RTP: header parsing and RFC 3550 receiver statistics (compiled twin of ``rtpin_py``).

``parse_rtp(data) -> (payload_type, marker, sequence_number, timestamp, ssrc, payload)``
parses an unprotected RTP packet exactly as aiortc 1.16's ``RtpPacket.parse`` does
(same ``ValueError`` cases); ``StreamStats(clockrate)`` is a drop-in for aiortc's
``StreamStatistics`` with a packet-free ``update(sequence_number, timestamp, now_s)``.
See the twin for the full contract.
"""

import time

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t

DEF RTP_HEADER_BYTES = 12
DEF PACKETS_LOST_MIN = -(1 << 23)
DEF PACKETS_LOST_MAX = (1 << 23) - 1


cdef const char* _RTP_ERRORS[6]
_RTP_ERRORS[0] = b"RTP packet length is less than 12 bytes"
_RTP_ERRORS[1] = b"RTP packet has invalid version"
_RTP_ERRORS[2] = b"RTP packet has truncated CSRC"
_RTP_ERRORS[3] = b"RTP packet has truncated extension profile / length"
_RTP_ERRORS[4] = b"RTP packet has truncated extension value"
_RTP_ERRORS[5] = b"RTP packet padding length is invalid"


cdef int _extension_elements_bad(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                                 bint one_byte) noexcept nogil:
    cdef Py_ssize_t length
    while pos < end:
        if p[pos] == 0:
            pos += 1
            continue
        if one_byte:
            length = (p[pos] & 0x0F) + 1
            pos += 1
            if end < pos + length:
                return 7
        else:
            if end < pos + 2:
                return 8
            length = p[pos + 1]
            pos += 2
            if end < pos + length:
                return 9
        pos += length
    return 0


cdef int rtp_header(const unsigned char* p, Py_ssize_t n, RtpHeader* h) noexcept nogil:
    """Parse an unprotected RTP packet of ``n`` bytes: 0, or the number of the ``ValueError`` aiortc raises."""
    cdef Py_ssize_t pos, ext_bytes, padding
    cdef int b0, profile, bad
    if n < RTP_HEADER_BYTES:
        return 1
    b0 = p[0]
    if b0 >> 6 != 2:
        return 2
    pos = RTP_HEADER_BYTES + 4 * (b0 & 0x0F)
    if n < pos:
        return 3
    h.payload_type = p[1] & 0x7F
    h.marker = p[1] >> 7
    h.sequence_number = (p[2] << 8) | p[3]
    h.timestamp = (<uint32_t>p[4] << 24) | (<uint32_t>p[5] << 16) | (<uint32_t>p[6] << 8) | <uint32_t>p[7]
    h.ssrc = (<uint32_t>p[8] << 24) | (<uint32_t>p[9] << 16) | (<uint32_t>p[10] << 8) | <uint32_t>p[11]
    if b0 & 0x10:
        if n < pos + 4:
            return 4
        ext_bytes = ((p[pos + 2] << 8) | p[pos + 3]) * 4
        pos += 4
        if n < pos + ext_bytes:
            return 5
        profile = (p[pos - 4] << 8) | p[pos - 3]
        if profile == 0xBEDE or profile == 0x1000:
            bad = _extension_elements_bad(p, pos, pos + ext_bytes, profile == 0xBEDE)
            if bad:
                return bad
        pos += ext_bytes
    if b0 & 0x20:
        padding = p[n - 1]
        if padding == 0 or padding > n - pos:
            return 6
        n -= padding
    h.payload_offset = pos
    h.payload_bytes = n - pos
    return 0


_EXTENSION_ERRORS = {
    7: "RTP one-byte header extension value is truncated",
    8: "RTP two-byte header extension is truncated",
    9: "RTP two-byte header extension value is truncated",
}


def parse_rtp(bytes data not None):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef RtpHeader h
    cdef int bad = rtp_header(p, n, &h)
    if bad:
        raise ValueError(_EXTENSION_ERRORS[bad] if bad > 6 else _RTP_ERRORS[bad - 1].decode())
    return (h.payload_type, h.marker, h.sequence_number, h.timestamp, h.ssrc,
            PyBytes_FromStringAndSize(<const char*>p + h.payload_offset, h.payload_bytes))


cdef inline bint _uint16_gt(int a, int b) noexcept:
    return (a < b and b - a > 0x8000) or (a > b and a - b < 0x8000)


cdef class StreamStats:
    """aiortc's ``StreamStatistics``, same fields and arithmetic, with a packet-free ``update``; one fix:
    the jitter takes the RTP timestamp difference modulo 2**32 (aiortc's does not, so a timestamp
    wrap -- every ~25 h of a 48 kHz stream, from a random origin -- reported ~2**28 of jitter for seconds)."""

    def __init__(self, int clockrate):
        self.base_seq = None
        self.max_seq = None
        self.cycles = 0
        self.packets_received = 0
        self._clockrate = clockrate
        self._jitter_q4 = 0
        self._last_arrival = 0
        self._last_timestamp = 0
        self._has_timestamp = False
        self._base = -1
        self._max = -1
        self._expected_prior = 0
        self._received_prior = 0

    def add(self, packet):
        self.update(packet.sequence_number, packet.timestamp, time.time())

    cpdef update(self, int sequence_number, int64_t timestamp, double now_s):
        cdef int64_t arrival, diff, dts
        self.packets_received += 1
        if self._base < 0:
            self._base = sequence_number
            self.base_seq = sequence_number
        if self._max < 0 or _uint16_gt(sequence_number, self._max):
            arrival = <int64_t>(now_s * self._clockrate)
            if self._max >= 0 and sequence_number < self._max:
                self.cycles += 1 << 16
            self._max = sequence_number
            self.max_seq = sequence_number
            if (not self._has_timestamp or timestamp != self._last_timestamp) and self.packets_received > 1:
                # the RTP timestamp difference modulo 2**32 (RFC 3550 A.8): a wrap is one frame, not -2**32
                dts = (timestamp - self._last_timestamp) & 0xFFFFFFFF
                if dts >= 0x80000000:
                    dts -= 0x100000000
                diff = (arrival - self._last_arrival) - dts
                if diff < 0:
                    diff = -diff
                self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
            self._last_arrival = arrival
            self._last_timestamp = timestamp
            self._has_timestamp = True

    @property
    def fraction_lost(self):
        cdef int64_t expected = self.cycles + self._max - self._base + 1
        cdef int64_t expected_interval = expected - self._expected_prior
        cdef int64_t received_interval, lost_interval
        self._expected_prior = expected
        received_interval = self.packets_received - self._received_prior
        self._received_prior = self.packets_received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval

    @property
    def jitter(self):
        return self._jitter_q4 >> 4

    @property
    def packets_expected(self):
        if self._max < 0:
            raise TypeError("no packet received yet")
        return self.cycles + self._max - self._base + 1

    @property
    def packets_lost(self):
        cdef int64_t lost = self.packets_expected - self.packets_received
        if lost < PACKETS_LOST_MIN:
            return PACKETS_LOST_MIN
        if lost > PACKETS_LOST_MAX:
            return PACKETS_LOST_MAX
        return lost
