# Shared declarations (no module of its own): the socket API of the batched datagram kernels.
from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
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
    uint16_t htons(uint16_t)
    uint32_t htonl(uint32_t)
    uint16_t ntohs(uint16_t)
    uint32_t ntohl(uint32_t)


# Filling a sockaddr for sendmmsg, shared by the send kernels (udpbatch, rtpsend); each parses the
# host its own way (udpbatch caches IPv4 strings) and hands the 4 or 16 packed bytes here.
cdef inline void fill_v4(sockaddr_storage* ss, socklen_t* length, uint32_t s_addr, uint16_t port) noexcept:
    cdef sockaddr_in* v4 = <sockaddr_in*>ss
    v4.sin_family = AF_INET
    v4.sin_port = htons(port)
    v4.sin_addr.s_addr = s_addr
    length[0] = sizeof(sockaddr_in)


cdef inline int fill_v6(sockaddr_storage* ss, socklen_t* length, const char* packed16, uint16_t port,
                        object addr) except -1:
    """``addr``: the Python address tuple, for its optional flowinfo (index 2) and scope id (index 3)."""
    cdef sockaddr_in6* v6 = <sockaddr_in6*>ss
    cdef int i
    v6.sin6_family = AF_INET6
    v6.sin6_port = htons(port)
    for i in range(16):
        v6.sin6_addr.s6_addr[i] = <uint8_t>packed16[i]
    if len(addr) > 2:
        v6.sin6_flowinfo = htonl(addr[2])
    if len(addr) > 3:
        v6.sin6_scope_id = addr[3]
    length[0] = sizeof(sockaddr_in6)
    return 0
