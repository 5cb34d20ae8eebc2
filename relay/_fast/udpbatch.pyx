# cython: language_level=3
"""Batched datagram I/O: one ``recvmmsg`` per batch received, one ``sendmmsg`` per batch sent.

Compiled twin of ``udpbatch_py`` (see it for the contract). Linux (recvmmsg/sendmmsg: glibc >= 2.14).
IPv4 source addresses are turned into strings through a small cache (the same peers send all the
time); IPv6 ones with ``inet_ntop`` each time (a link-local source's host has no ``%scope``
suffix here, unlike ``recvfrom``; its scope id is in the tuple).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import os as _os
import socket as _socket

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, void* timeout)
    int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags)
    int AF_INET
    int AF_INET6
    int MSG_DONTWAIT

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct in6_addr:
        uint8_t s6_addr[16]
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    uint16_t ntohs(uint16_t)
    uint16_t htons(uint16_t)
    uint32_t ntohl(uint32_t)
    uint32_t htonl(uint32_t)

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
        self._buf = <char*>malloc(<size_t>max_datagrams * max_bytes)
        if not (self._msgs and self._iov and self._names and self._buf):
            raise MemoryError()
        memset(self._msgs, 0, max_datagrams * sizeof(mmsghdr))
        cdef int i
        for i in range(max_datagrams):
            self._iov[i].iov_base = self._buf + <size_t>i * max_bytes
            self._iov[i].iov_len = max_bytes
            self._msgs[i].msg_hdr.msg_iov = &self._iov[i]
            self._msgs[i].msg_hdr.msg_iovlen = 1

    def __dealloc__(self):
        free(self._msgs)
        free(self._iov)
        free(self._names)
        free(self._buf)

    def recv(self, sock):
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
                return []
            raise OSError(err, _os.strerror(err))
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
    cdef sockaddr_in* v4
    cdef sockaddr_in6* v6
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
        v4 = <sockaddr_in*>ss
        v4.sin_family = AF_INET
        v4.sin_port = htons(port)
        v4.sin_addr.s_addr = s_addr
        length[0] = sizeof(sockaddr_in)
        return 0
    packed = _packed(_socket.AF_INET6, host)
    v6 = <sockaddr_in6*>ss
    v6.sin6_family = AF_INET6
    v6.sin6_port = htons(port)
    memcpy(&v6.sin6_addr, PyBytes_AS_STRING(packed), 16)
    if len(addr) > 2:
        v6.sin6_flowinfo = htonl(addr[2])
    if len(addr) > 3:
        v6.sin6_scope_id = addr[3]
    length[0] = sizeof(sockaddr_in6)
    return 0


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
