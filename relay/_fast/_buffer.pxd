# Shared inline helper (compiled into each kernel; no module of its own).
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE


cdef inline bytes as_bytes(object data):
    """``data`` itself when it is ``bytes`` (no copy), else a copy of any bytes-like object.

    Non-buffer objects (str, int, ...) raise TypeError, as a typed memoryview would.
    """
    if type(data) is bytes:
        return <bytes>data
    return bytes(memoryview(data))


cdef inline const unsigned char* bytes_ptr(bytes data) noexcept:
    return <const unsigned char*>PyBytes_AS_STRING(data)
