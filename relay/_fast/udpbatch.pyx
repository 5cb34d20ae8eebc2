# cython: language_level=3
"""Batched datagram I/O: one ``recvmmsg`` per batch received, one ``sendmmsg`` per batch sent.

Compiled twin of ``udpbatch_py`` (see it for the contract). Linux (recvmmsg/sendmmsg: glibc >= 2.14).
IPv4 source addresses are turned into strings through a small cache (the same peers send all the
time); IPv6 ones with ``inet_ntop`` each time (a link-local source's host has no ``%scope``
suffix here, unlike ``recvfrom``; its scope id is in the tuple).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from relay._fast.rtpin cimport RtpHeader, StreamStats, rtp_header
from relay._fast.uplinkasm cimport UplinkAssembler, monotonic_s

import os as _os
import socket as _socket

from relay._fast._net cimport (AF_INET, AF_INET6, MSG_DONTWAIT, fill_v4, fill_v6, htonl, htons, iovec, mmsghdr, ntohl, ntohs,
                              recvmmsg, sendmmsg, sockaddr_in, sockaddr_in6, sockaddr_storage, socklen_t)

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)
    int inet_pton(int af, const char* src, void* dst)

DEF ADDR_CACHE_MAX = 4096
DEF MAX_DATAGRAMS_LIMIT = 1024
DEF MAX_BYTES_LIMIT = 65536

cdef dict _v4_names = {}  # s_addr -> host string
cdef dict _v4_parsed = {}  # host string -> s_addr (sending)


cdef object _host_v4(uint32_t s_addr):
    name = _v4_names.get(s_addr)
    if name is None:
        if len(_v4_names) >= ADDR_CACHE_MAX:
            _v4_names.clear()
        b = ntohl(s_addr)
        name = f"{(b >> 24) & 255}.{(b >> 16) & 255}.{(b >> 8) & 255}.{b & 255}"
        _v4_names[s_addr] = name
    return name


cdef object _addr_of(sockaddr_storage* ss):
    cdef sockaddr_in* v4
    cdef sockaddr_in6* v6
    cdef char text[64]
    if ss.ss_family == AF_INET:
        v4 = <sockaddr_in*>ss
        return (_host_v4(v4.sin_addr.s_addr), ntohs(v4.sin_port))
    if ss.ss_family == AF_INET6:
        v6 = <sockaddr_in6*>ss
        if inet_ntop(AF_INET6, &v6.sin6_addr, text, 64) == NULL:
            return None
        return (text.decode("ascii"), ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo), v6.sin6_scope_id)
    return None


cdef class BatchReceiver:
    cdef readonly int max_datagrams
    cdef readonly int max_bytes
    cdef mmsghdr* _msgs
    cdef iovec* _iov
    cdef sockaddr_storage* _names
    cdef char* _buf

    def __cinit__(self, int max_datagrams=64, int max_bytes=2048):
        if not 1 <= max_datagrams <= MAX_DATAGRAMS_LIMIT:
            raise ValueError(f"max_datagrams must be 1..{MAX_DATAGRAMS_LIMIT}")
        if not 1 <= max_bytes <= MAX_BYTES_LIMIT:
            raise ValueError(f"max_bytes must be 1..{MAX_BYTES_LIMIT}")
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self._msgs = <mmsghdr*>malloc(max_datagrams * sizeof(mmsghdr))
        self._iov = <iovec*>malloc(max_datagrams * sizeof(iovec))
        self._names = <sockaddr_storage*>malloc(max_datagrams * sizeof(sockaddr_storage))
        cdef size_t stride = (<size_t>max_bytes + 15) & ~(<size_t>15)  # each datagram 16-byte aligned (libsrtp)
        self._buf = <char*>malloc(<size_t>max_datagrams * stride)
        if not (self._msgs and self._iov and self._names and self._buf):
            raise MemoryError()
        memset(self._msgs, 0, max_datagrams * sizeof(mmsghdr))
        cdef int i
        for i in range(max_datagrams):
            self._iov[i].iov_base = self._buf + <size_t>i * stride
            self._iov[i].iov_len = max_bytes
            self._msgs[i].msg_hdr.msg_iov = &self._iov[i]
            self._msgs[i].msg_hdr.msg_iovlen = 1

    def __dealloc__(self):
        free(self._msgs)
        free(self._iov)
        free(self._names)
        free(self._buf)

    cdef int _drain(self, sock) except -1:
        """One ``recvmmsg`` into the buffers: how many datagrams it read (0: nothing waiting)."""
        cdef int fd = sock.fileno()
        cdef int i, n, err
        if fd < 0:
            raise OSError(9, "Bad file descriptor")
        for i in range(self.max_datagrams):
            self._msgs[i].msg_hdr.msg_name = &self._names[i]
            self._msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            self._msgs[i].msg_hdr.msg_flags = 0
        with nogil:
            n = recvmmsg(fd, self._msgs, self.max_datagrams, MSG_DONTWAIT, NULL)
            err = errno
        if n < 0:
            if err == EAGAIN or err == EINTR:  # EWOULDBLOCK == EAGAIN on Linux
                return 0
            raise OSError(err, _os.strerror(err))
        return n

    def recv(self, sock):
        cdef int i, n = self._drain(sock)
        out = []
        for i in range(n):
            out.append((PyBytes_FromStringAndSize(<char*>self._iov[i].iov_base, self._msgs[i].msg_len),
                        _addr_of(&self._names[i])))
        return out


cdef object _packed(int family, object host):
    try:
        return _socket.inet_pton(family, host)
    except (OSError, TypeError):
        raise ValueError(f"not an IP address: {host!r}") from None


cdef int _fill_addr(object addr, sockaddr_storage* ss, socklen_t* length) except -1:
    host = addr[0]
    port = addr[1]
    s_addr = _v4_parsed.get(host)
    memset(ss, 0, sizeof(sockaddr_storage))
    if s_addr is None and ":" not in host:
        packed = _packed(_socket.AF_INET, host)
        s_addr = (<uint32_t*>PyBytes_AS_STRING(packed))[0]
        if len(_v4_parsed) >= ADDR_CACHE_MAX:
            _v4_parsed.clear()
        _v4_parsed[host] = s_addr
    if s_addr is not None:
        fill_v4(ss, length, s_addr, port)
        return 0
    packed = _packed(_socket.AF_INET6, host)
    return fill_v6(ss, length, PyBytes_AS_STRING(packed), port, addr)


def send_batch(sock, list datagrams):
    cdef int fd = sock.fileno()
    cdef Py_ssize_t count = len(datagrams)
    cdef Py_ssize_t i
    cdef int n, err
    cdef mmsghdr* msgs
    cdef iovec* iov
    cdef sockaddr_storage* names
    cdef socklen_t length
    if count == 0:
        return 0
    if fd < 0:
        raise OSError(9, "Bad file descriptor")
    msgs = <mmsghdr*>malloc(count * sizeof(mmsghdr))
    iov = <iovec*>malloc(count * sizeof(iovec))
    names = <sockaddr_storage*>malloc(count * sizeof(sockaddr_storage))
    try:
        if not (msgs and iov and names):
            raise MemoryError()
        memset(msgs, 0, count * sizeof(mmsghdr))
        for i in range(count):
            data, addr = datagrams[i]
            if not isinstance(data, bytes):
                raise TypeError("datagrams must be (bytes, address) pairs")
            _fill_addr(addr, &names[i], &length)
            iov[i].iov_base = PyBytes_AS_STRING(data)
            iov[i].iov_len = PyBytes_GET_SIZE(data)
            msgs[i].msg_hdr.msg_iov = &iov[i]
            msgs[i].msg_hdr.msg_iovlen = 1
            msgs[i].msg_hdr.msg_name = &names[i]
            msgs[i].msg_hdr.msg_namelen = length
        with nogil:
            n = sendmmsg(fd, msgs, <unsigned int>count, MSG_DONTWAIT)
            err = errno
        if n < 0:
            if err == EAGAIN or err == EINTR:  # EWOULDBLOCK == EAGAIN on Linux
                return 0
            raise OSError(err, _os.strerror(err))
        return n
    finally:
        free(msgs)
        free(iov)
        free(names)


# -- the compiled receive path of the worker's ICE port ------------------------------------------------

ctypedef int (*unprotect_fn)(void* ctx, void* hdr, int* len_ptr) noexcept nogil

cdef struct Key:  # a source address: IPv4 in ``lo``, IPv6 in ``hi``/``lo`` (raw bytes); ``tag``: family, port
    uint64_t hi
    uint64_t lo
    uint64_t tag  # 0: empty entry; TOMBSTONE: deleted; else 1 << 32 | family << 16 | port

cdef struct Entry:  # one bound source address (open addressing, linear probing)
    Key key
    int slot
    double last_rx_s

cdef struct Slot:
    bint used
    bint armed
    void* srtp
    uint32_t ssrc
    uint64_t pt_mask[2]
    int64_t packets
    int64_t octets
    int64_t srtp_dropped
    int64_t rtp_dropped
    bint paused
    uint64_t held_batch  # the batch in which SRTP/SRTCP of this slot went Python's way

DEF TOMBSTONE = 1
DEF MAX_SRTP_BYTES = 1500  # pylibsrtp's limit: longer ones go the Python way (which drops them)
DEF TABLE_MIN = 64
DEF MAX_SLOTS = 1 << 20

cdef unprotect_fn _unprotect = NULL


cdef void _load_srtp() except *:
    global _unprotect
    if _unprotect == NULL:
        from relay._fast.srtp import unprotect_address
        _unprotect = <unprotect_fn><uintptr_t>unprotect_address()


cdef inline bint _sockaddr_key(sockaddr_storage* ss, Key* k) noexcept nogil:
    """The key of a received datagram's source: False for a family other than IPv4/IPv6."""
    cdef sockaddr_in* v4
    cdef sockaddr_in6* v6
    if ss.ss_family == AF_INET:
        v4 = <sockaddr_in*>ss
        k.hi = 0
        k.lo = v4.sin_addr.s_addr
        k.tag = (<uint64_t>1 << 32) | (4 << 16) | ntohs(v4.sin_port)
        return True
    if ss.ss_family == AF_INET6:
        v6 = <sockaddr_in6*>ss
        memcpy(&k.hi, &v6.sin6_addr, 8)
        memcpy(&k.lo, (<char*>&v6.sin6_addr) + 8, 8)
        k.tag = (<uint64_t>1 << 32) | (6 << 16) | ntohs(v6.sin6_port)
        return True
    return False


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    x ^= x >> 33
    x *= <uint64_t>0xff51afd7ed558ccd
    x ^= x >> 33
    return x


cdef inline uint64_t _hash(Key* k) noexcept nogil:
    return _mix(k.hi ^ _mix(k.lo ^ _mix(k.tag)))


cdef inline bint _same(Key* a, Key* b) noexcept nogil:
    return a.tag == b.tag and a.lo == b.lo and a.hi == b.hi


cdef class MuxReceiver(BatchReceiver):
    """``BatchReceiver`` plus the compiled SRTP audio path (contract: ``udpbatch_py.MuxReceiver``)."""
    cdef Entry* _table
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _filled  # entries in use or tombstones
    cdef Py_ssize_t _count
    cdef Slot* _slots
    cdef int _nslots
    cdef list _free
    cdef list _objects  # per slot: (session, stats, push) while armed, else None
    cdef readonly int64_t push_errors
    cdef uint64_t _batch
    cdef readonly int received  # datagrams the last recv() read (taken or handed back)
    cdef public object last_push_error

    def __cinit__(self, int max_datagrams=64, int max_bytes=2048):
        self._capacity = TABLE_MIN
        self._table = <Entry*>calloc(TABLE_MIN, sizeof(Entry))
        self._nslots = 0
        self._slots = NULL
        self._free = []
        self._objects = []
        self.last_push_error = None
        if self._table == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self._table)
        free(self._slots)

    # -- slots ------------------------------------------------------------------
    def new_slot(self):
        cdef int slot
        cdef Slot* grown
        if self._free:
            slot = self._free.pop()
        else:
            if self._nslots >= MAX_SLOTS:
                raise RuntimeError("too many slots")
            grown = <Slot*>realloc(self._slots, (self._nslots + 1) * sizeof(Slot))
            if grown == NULL:
                raise MemoryError()
            self._slots = grown
            slot = self._nslots
            self._nslots += 1
            self._objects.append(None)
        memset(&self._slots[slot], 0, sizeof(Slot))
        self._slots[slot].used = True
        return slot

    cdef Slot* _slot(self, int slot) except NULL:
        if not 0 <= slot < self._nslots or not self._slots[slot].used:
            raise KeyError(f"no slot {slot}")
        return &self._slots[slot]

    def free_slot(self, int slot):
        cdef Py_ssize_t i
        self._slot(slot)
        for i in range(self._capacity):
            if self._table[i].key.tag > TOMBSTONE and self._table[i].slot == slot:
                self._table[i].key.tag = TOMBSTONE
                self._count -= 1
        self._slots[slot].used = False
        self._slots[slot].armed = False
        self._objects[slot] = None
        self._free.append(slot)

    def arm(self, int slot, session, payload_types, long long ssrc_, stats, push):
        cdef Slot* s = self._slot(slot)
        cdef int pt
        _load_srtp()
        if not isinstance(stats, StreamStats):
            raise TypeError("stats must be a relay._fast StreamStats")
        if not 0 <= ssrc_ <= 0xFFFFFFFF:
            raise ValueError("an SSRC is 0..2**32-1")
        from relay._fast.srtp import session_address
        s.srtp = <void*><uintptr_t>session_address(session)
        s.ssrc = <uint32_t>ssrc_
        s.pt_mask[0] = s.pt_mask[1] = 0
        for pt in payload_types:
            if not 0 <= pt < 128:
                raise ValueError("payload types are 0..127")
            s.pt_mask[pt >> 6] |= <uint64_t>1 << (pt & 63)
        self._objects[slot] = (session, stats, push)  # the session outlives its use here
        s.armed = True
        s.paused = False

    def disarm(self, int slot):
        cdef Slot* s = self._slot(slot)
        s.armed = False
        s.paused = False
        self._objects[slot] = None

    def pause(self, int slot):
        self._slot(slot).paused = True

    def resume(self, int slot):
        self._slot(slot).paused = False

    def taking(self, int slot):
        """Whether the compiled path takes this slot's audio now (armed, not paused)."""
        cdef Slot* s = self._slot(slot)
        return s.armed and not s.paused

    def take_counts(self, int slot):
        cdef Slot* s = self._slot(slot)
        out = (s.packets, s.octets, s.srtp_dropped, s.rtp_dropped)
        s.packets = s.octets = s.srtp_dropped = s.rtp_dropped = 0
        return out

    # -- the address table --------------------------------------------------------
    cdef Entry* _find(self, Key* key) noexcept nogil:
        cdef Py_ssize_t mask = self._capacity - 1
        cdef Py_ssize_t i = _hash(key) & mask
        while self._table[i].key.tag != 0:
            if _same(&self._table[i].key, key):
                return &self._table[i]
            i = (i + 1) & mask
        return NULL

    cdef int _grow(self) except -1:
        cdef Entry* old = self._table
        cdef Py_ssize_t old_capacity = self._capacity, i, j, mask
        cdef Py_ssize_t capacity = old_capacity
        if (self._count + 1) * 4 >= capacity:  # keep the load under 1/2 after the move
            capacity *= 2
        self._table = <Entry*>calloc(capacity, sizeof(Entry))
        if self._table == NULL:
            self._table = old
            raise MemoryError()
        self._capacity = capacity
        mask = capacity - 1
        for i in range(old_capacity):
            if old[i].key.tag > TOMBSTONE:
                j = _hash(&old[i].key) & mask
                while self._table[j].key.tag != 0:
                    j = (j + 1) & mask
                self._table[j] = old[i]
        self._filled = self._count
        free(old)
        return 0

    cdef int _addr_key(self, host, port, Key* k) except -1:
        if not isinstance(host, str):
            raise ValueError(f"not an IP address: {host!r}")
        if not 0 <= port <= 65535:
            raise ValueError("port must be 0..65535")
        if ":" in host:
            packed = _packed(_socket.AF_INET6, host.partition("%")[0])
            memcpy(&k.hi, PyBytes_AS_STRING(packed), 8)
            memcpy(&k.lo, PyBytes_AS_STRING(packed) + 8, 8)
            k.tag = (<uint64_t>1 << 32) | (6 << 16) | <uint16_t>port
            return 0
        s_addr = _v4_parsed.get(host)
        if s_addr is None:
            packed = _packed(_socket.AF_INET, host)
            s_addr = (<uint32_t*>PyBytes_AS_STRING(packed))[0]
        k.hi = 0
        k.lo = <uint32_t>s_addr
        k.tag = (<uint64_t>1 << 32) | (4 << 16) | <uint16_t>port
        return 0

    def bind(self, host, port, int slot):
        """Bind ``(host, port)`` (IPv4 or IPv6; an IPv6 scope is ignored) to ``slot``."""
        cdef Key key
        cdef Entry* e
        cdef Py_ssize_t mask, i
        self._addr_key(host, port, &key)
        self._slot(slot)
        e = self._find(&key)
        if e == NULL:
            if (self._filled + 1) * 2 > self._capacity:
                self._grow()
            mask = self._capacity - 1
            i = _hash(&key) & mask
            while self._table[i].key.tag > TOMBSTONE:
                i = (i + 1) & mask
            e = &self._table[i]
            if e.key.tag == 0:
                self._filled += 1
            e.key = key
            e.last_rx_s = 0.0
            self._count += 1
        e.slot = slot
        return True

    def unbind(self, host, port):
        cdef Key key
        cdef Entry* e
        self._addr_key(host, port, &key)
        e = self._find(&key)
        if e != NULL:
            e.key.tag = TOMBSTONE
            self._count -= 1

    def bound(self, host, port):
        """The slot ``(host, port)`` is bound to, or None."""
        cdef Key key
        self._addr_key(host, port, &key)
        cdef Entry* e = self._find(&key)
        return None if e == NULL else e.slot

    def last_rx(self, host, port):
        """When the compiled path last took a datagram from ``(host, port)`` (``recv``'s ``now_s``), or 0.0."""
        cdef Key key
        self._addr_key(host, port, &key)
        cdef Entry* e = self._find(&key)
        return 0.0 if e == NULL else e.last_rx_s

    def __len__(self):
        return self._count

    # -- receive --------------------------------------------------------------------
    def recv(self, sock, double now_s, double wall_s):
        cdef int i, n, rc, length, b1, slot
        cdef unsigned char* p
        cdef Key key
        cdef Entry* e
        cdef Slot* s
        cdef RtpHeader h
        cdef uint32_t ssrc_
        cdef list out = []
        cdef object objects, push
        self.received = 0
        n = self._drain(sock)
        self.received = n
        self._batch += 1
        for i in range(n):
            p = <unsigned char*>self._iov[i].iov_base
            length = self._msgs[i].msg_len
            e = NULL
            if self._count and length > 0 and 127 < p[0] < 192 and _sockaddr_key(&self._names[i], &key):
                e = self._find(&key)
            if e == NULL:
                out.append((PyBytes_FromStringAndSize(<char*>p, length), _addr_of(&self._names[i])))
                continue
            slot = e.slot
            s = &self._slots[slot]
            if length >= 12:
                b1 = p[1]
                ssrc_ = (<uint32_t>p[8] << 24) | (<uint32_t>p[9] << 16) | (<uint32_t>p[10] << 8) | <uint32_t>p[11]
            if (length < 12 or length > MAX_SRTP_BYTES or not s.armed or s.paused or s.held_batch == self._batch or 191 < b1 < 209
                    or not (s.pt_mask[(b1 & 0x7F) >> 6] >> (b1 & 63)) & 1 or ssrc_ != s.ssrc):
                # SRTP/SRTCP of this slot goes Python's way: its later audio in this batch must not overtake it
                s.held_batch = self._batch
                out.append((PyBytes_FromStringAndSize(<char*>p, length), _addr_of(&self._names[i])))
                continue
            e.last_rx_s = now_s
            s.packets += 1
            s.octets += length
            rc = _unprotect(s.srtp, p, &length)
            if rc != 0:
                s.srtp_dropped += 1
                continue
            if rtp_header(p, length, &h) != 0:
                s.rtp_dropped += 1
                continue
            objects = self._objects[slot]
            (<StreamStats>objects[1]).update(h.sequence_number, h.timestamp, wall_s)
            push = objects[2]
            try:
                if type(push) is UplinkAssembler:  # the uplink, in C: no Python call but a finished chunk's
                    (<UplinkAssembler>push).push_packet(h.sequence_number, p + h.payload_offset, h.payload_bytes,
                                                        monotonic_s(), True)
                else:
                    push(h.sequence_number, PyBytes_FromStringAndSize(<char*>p + h.payload_offset, h.payload_bytes))
            except Exception as exc:  # one call's failure must not cost the rest of the batch
                self.push_errors += 1
                self.last_push_error = exc
        return out
