# cython: language_level=3
"""The downlink send kernel: RTP header + payload written into a socket's send buffer, SRTP-protected
in place, queued, and a whole queue sent with one ``sendmmsg`` (compiled twin of ``rtpsend_py``).

See ``rtpsend_py`` for the contract. Per packet no Python object is made: the header is a
per-stream template patched in place, the payload is copied once into the queue's slot, libsrtp's
``srtp_protect`` is called through the function pointer of the library pylibsrtp already loaded
(on the session aiortc's DTLS transport keyed), the destination's ``sockaddr`` is kept per stream
(rebuilt only when the address changes), and the counters an RTCP sender report needs live
in the stream's C fields.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from relay._fast._buffer cimport as_bytes
from relay._fast._net cimport (AF_INET, AF_INET6, MSG_DONTWAIT, fill_v4, fill_v6, htonl, htons, iovec, mmsghdr, sendmmsg,
                               sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t)

import os as _os
import socket as _socket

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_REALTIME

DEF SLOT_BYTES = 2048  # one datagram's room in a queue
DEF SRTP_MAX_TRAILER = 144  # SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN: what srtp_protect may append
DEF MAX_HEADER = 16 + 4 * 255  # fixed header + the largest one-byte/two-byte extension block relay lays out
DEF MAX_DATAGRAMS_LIMIT = 1024
DEF NTP_EPOCH_OFFSET_S = 2208988800

MAX_PACKET_BYTES = SLOT_BYTES - SRTP_MAX_TRAILER  # header + payload before protection

ctypedef int (*srtp_protect_fn)(void* ctx, void* rtp, int* length) noexcept nogil


cdef class SendQueue:
    cdef readonly object sock
    cdef readonly int max_datagrams
    cdef readonly int pending
    cdef readonly uint64_t datagrams_sent
    cdef readonly uint64_t batches
    cdef readonly uint64_t send_errors
    cdef readonly int last_errno
    cdef object _on_pending
    cdef int _fd
    cdef char* _buf
    cdef mmsghdr* _msgs
    cdef iovec* _iov
    cdef sockaddr_storage* _names

    def __cinit__(self, sock, int max_datagrams=64, on_pending=None):
        if not 1 <= max_datagrams <= MAX_DATAGRAMS_LIMIT:
            raise ValueError(f"max_datagrams must be 1..{MAX_DATAGRAMS_LIMIT}")
        self._fd = sock.fileno()
        if self._fd < 0:
            raise OSError(9, "Bad file descriptor")
        self.sock = sock
        self.max_datagrams = max_datagrams
        self._on_pending = on_pending
        self._buf = <char*>malloc(<size_t>max_datagrams * SLOT_BYTES)
        self._msgs = <mmsghdr*>malloc(max_datagrams * sizeof(mmsghdr))
        self._iov = <iovec*>malloc(max_datagrams * sizeof(iovec))
        self._names = <sockaddr_storage*>malloc(max_datagrams * sizeof(sockaddr_storage))
        if not (self._buf and self._msgs and self._iov and self._names):
            raise MemoryError()
        memset(self._msgs, 0, max_datagrams * sizeof(mmsghdr))
        cdef int i
        for i in range(max_datagrams):
            self._iov[i].iov_base = self._buf + <size_t>i * SLOT_BYTES
            self._msgs[i].msg_hdr.msg_iov = &self._iov[i]
            self._msgs[i].msg_hdr.msg_iovlen = 1
            self._msgs[i].msg_hdr.msg_name = &self._names[i]

    def __dealloc__(self):
        free(self._buf)
        free(self._msgs)
        free(self._iov)
        free(self._names)

    def flush(self):
        """Send every queued datagram, with one ``sendmmsg`` (see the twin); returns how many left."""
        cdef int n, err = 0, count = self.pending, i = 0, sent = 0
        if count == 0:
            return 0
        self.pending = 0
        while i < count:
            with nogil:
                n = sendmmsg(self._fd, self._msgs + i, <unsigned int>(count - i), MSG_DONTWAIT)
                err = errno
            if n > 0:
                i += n
                sent += n
            elif err == EINTR:
                continue
            elif err == EAGAIN:  # the send buffer is full: the rest is lost (EWOULDBLOCK == EAGAIN on Linux)
                break
            else:  # this datagram cannot be sent (e.g. no route to its address): skip it, send the rest
                self.last_errno = err
                self.send_errors += 1
                i += 1
        self.batches += 1
        self.datagrams_sent += sent
        self.send_errors += count - i
        return sent

    cdef char* _slot(self) except NULL:
        """The next free slot (flushing a full queue first)."""
        if self.pending >= self.max_datagrams:
            self.flush()
        return self._buf + <size_t>self.pending * SLOT_BYTES

    cdef int _commit(self, int length, sockaddr_storage* name, socklen_t namelen) except -1:
        cdef int i = self.pending
        self._iov[i].iov_len = length
        memcpy(&self._names[i], name, namelen)
        self._msgs[i].msg_hdr.msg_namelen = namelen
        self.pending = i + 1
        if i == 0 and self._on_pending is not None:
            self._on_pending()
        return 0


cdef class RtpStream:
    cdef unsigned char _header[MAX_HEADER]
    cdef int _header_len
    cdef int _abs_at
    cdef uint16_t _seq
    cdef uint32_t _origin
    cdef srtp_protect_fn _protect
    cdef void* _srtp
    cdef object _srtp_owner
    cdef object _dest
    cdef sockaddr_storage _name
    cdef socklen_t _namelen
    cdef readonly uint64_t packets_sent
    cdef readonly uint64_t octets_sent
    cdef readonly uint64_t bytes_sent
    cdef readonly uint32_t last_timestamp
    cdef readonly uint64_t last_ntp

    def __cinit__(self, *, int payload_type, uint32_t ssrc, int sequence_number, uint32_t timestamp_origin=0,
                  int marker=1, int extension_profile=0, extension_value=b"", int abs_send_time_at=-1):
        if not 0 <= payload_type < 128:
            raise ValueError("payload type must be 0..127")
        cdef bytes ext = as_bytes(extension_value)
        cdef Py_ssize_t ext_len = PyBytes_GET_SIZE(ext)
        if ext_len % 4 or 16 + ext_len > MAX_HEADER:
            raise ValueError("the extension block must be whole 32-bit words, at most 255 of them")
        if abs_send_time_at >= 0 and abs_send_time_at + 3 > ext_len:
            raise ValueError("abs_send_time_at is outside the extension block")
        memset(self._header, 0, MAX_HEADER)
        self._header[0] = 0x80 | (0x10 if ext_len else 0)
        self._header[1] = ((marker & 1) << 7) | payload_type
        self._header[8] = (ssrc >> 24) & 0xFF
        self._header[9] = (ssrc >> 16) & 0xFF
        self._header[10] = (ssrc >> 8) & 0xFF
        self._header[11] = ssrc & 0xFF
        self._header_len = 12
        if ext_len:
            self._header[12] = (extension_profile >> 8) & 0xFF
            self._header[13] = extension_profile & 0xFF
            self._header[14] = ((ext_len >> 2) >> 8) & 0xFF
            self._header[15] = (ext_len >> 2) & 0xFF
            memcpy(self._header + 16, PyBytes_AS_STRING(ext), ext_len)
            self._header_len = 16 + ext_len
        self._abs_at = 16 + abs_send_time_at if abs_send_time_at >= 0 else -1
        self._seq = sequence_number & 0xFFFF
        self._origin = timestamp_origin
        self._protect = NULL
        self._srtp = NULL

    @property
    def sequence_number(self):
        return self._seq

    @property
    def header_bytes(self):
        return self._header_len

    def set_srtp(self, owner, uintptr_t protect_fn, uintptr_t session):
        """Protect every packet with ``protect_fn(session, buffer, &length)`` (libsrtp's ``srtp_protect``);
        ``owner`` (the Python object that owns the session) is kept alive with it."""
        if protect_fn == 0 or session == 0:
            raise ValueError("no SRTP function or session")
        self._srtp_owner = owner
        self._protect = <srtp_protect_fn>protect_fn
        self._srtp = <void*>session

    cdef int _write(self, unsigned char* out, bytes payload, uint64_t pts, object ntp_time) except -1:
        """Header + payload into ``out``, protected; returns the datagram's length. Advances the stream."""
        cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
        cdef int length, err
        cdef uint32_t timestamp = self._origin + <uint32_t>pts
        cdef uint32_t abs_send_time
        cdef timespec now
        if self._header_len + size > SLOT_BYTES - SRTP_MAX_TRAILER:
            raise ValueError(f"packet of {self._header_len + size} bytes is too long")
        cdef uint64_t ntp
        if ntp_time is None:
            clock_gettime(CLOCK_REALTIME, &now)
            ntp = ((<uint64_t>now.tv_sec + NTP_EPOCH_OFFSET_S) << 32) | \
                (<uint64_t>(<double>now.tv_nsec * 4.294967296) & 0xFFFFFFFF)
        else:
            ntp = <uint64_t>ntp_time
        memcpy(out, self._header, self._header_len)
        out[2] = self._seq >> 8
        out[3] = self._seq & 0xFF
        out[4] = timestamp >> 24
        out[5] = (timestamp >> 16) & 0xFF
        out[6] = (timestamp >> 8) & 0xFF
        out[7] = timestamp & 0xFF
        if self._abs_at >= 0:
            abs_send_time = (ntp >> 14) & 0x00FFFFFF
            out[self._abs_at] = abs_send_time >> 16
            out[self._abs_at + 1] = (abs_send_time >> 8) & 0xFF
            out[self._abs_at + 2] = abs_send_time & 0xFF
        memcpy(out + self._header_len, PyBytes_AS_STRING(payload), size)
        length = self._header_len + <int>size
        if self._protect != NULL:
            err = self._protect(self._srtp, out, &length)
            if err:
                raise RuntimeError(f"srtp_protect failed (libsrtp error {err})")
        self._seq = (self._seq + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += size
        self.bytes_sent += length
        self.last_timestamp = timestamp
        self.last_ntp = ntp
        return length

    def build(self, payload, uint64_t pts, ntp=None):
        """The next packet as ``bytes`` (protected when SRTP is set), without sending it."""
        cdef unsigned char out[SLOT_BYTES]
        cdef int length = self._write(out, as_bytes(payload), pts, ntp)
        return PyBytes_FromStringAndSize(<char*>out, length)

    def send(self, SendQueue queue not None, payload, uint64_t pts, addr, ntp=None):
        """Write the next packet into ``queue`` for ``addr``; returns its length on the wire."""
        cdef unsigned char* out
        cdef int length
        if addr is not self._dest and addr != self._dest:  # an equal tuple made anew is the same address
            _fill_addr(addr, &self._name, &self._namelen)
            self._dest = addr
        out = <unsigned char*>queue._slot()
        length = self._write(out, as_bytes(payload), pts, ntp)
        queue._commit(length, &self._name, self._namelen)
        return length


cdef int _fill_addr(object addr, sockaddr_storage* ss, socklen_t* length) except -1:
    cdef bytes packed
    host = addr[0]
    port = addr[1]
    if not 0 <= port <= 65535:
        raise ValueError(f"not a port: {port!r}")
    memset(ss, 0, sizeof(sockaddr_storage))
    if isinstance(host, str) and ":" not in host:
        packed = _packed(_socket.AF_INET, host)
        fill_v4(ss, length, (<uint32_t*>PyBytes_AS_STRING(packed))[0], port)
        return 0
    packed = _packed(_socket.AF_INET6, host)
    return fill_v6(ss, length, PyBytes_AS_STRING(packed), port, addr)


cdef bytes _packed(int family, object host):
    try:
        return _socket.inet_pton(family, host)
    except (OSError, TypeError):
        raise ValueError(f"not an IP address: {host!r}") from None
