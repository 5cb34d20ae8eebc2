# cython: language_level=3
"""One libopus call per frame for a whole batch, under one GIL release (compiled twin of ``opusbatch_py``).

``encode_batch(encode_fn, states, frames, frame_samples) -> list[bytes | int]``: see the twin
for the contract. Why: called through ctypes, every ``opus_encode`` releases and re-takes the
GIL; on the media clock's encode thread, re-taking it waits for the event loop's thread to
give it up (up to ``sys.getswitchinterval()``, 5 ms) whenever the loop is busy in Python, so a
batch of 50 frames could take far longer than a 20 ms tick. Here the GIL is released once for
the whole batch.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uintptr_t
from libc.stdlib cimport free, malloc

DEF MAX_PACKET_BYTES = 1275
DEF OPUS_BAD_ARG = -1

ctypedef int32_t (*opus_encode_fn)(void* st, const char* pcm, int frame_size, unsigned char* data,
                                   int32_t max_data_bytes) noexcept nogil


def encode_batch(object encode_fn, list states not None, list frames not None, int frame_samples):
    cdef Py_ssize_t n = len(states)
    cdef Py_ssize_t i
    cdef uintptr_t fn_addr, state
    cdef opus_encode_fn fn
    if len(frames) != n:
        raise ValueError("states and frames differ in length")
    if frame_samples <= 0:
        raise ValueError("frame_samples must be positive")
    fn_addr = <uintptr_t>encode_fn
    if fn_addr == 0:
        raise ValueError("no opus_encode function")
    fn = <opus_encode_fn>fn_addr
    if n == 0:
        return []
    cdef void** st = <void**>malloc(n * sizeof(void*))
    cdef const char** pcm = <const char**>malloc(n * sizeof(char*))
    cdef int32_t* res = <int32_t*>malloc(n * sizeof(int32_t))
    cdef unsigned char* out = <unsigned char*>malloc(n * MAX_PACKET_BYTES)
    cdef object frame
    try:
        if st == NULL or pcm == NULL or res == NULL or out == NULL:
            raise MemoryError()
        for i in range(n):
            frame = frames[i]
            state = <uintptr_t>(states[i] or 0)
            if state == 0 or type(frame) is not bytes or PyBytes_GET_SIZE(frame) != 2 * frame_samples:
                st[i] = NULL  # a closed encoder or a wrong frame: OPUS_BAD_ARG, nothing is called
                pcm[i] = NULL
                continue
            st[i] = <void*>state
            pcm[i] = PyBytes_AS_STRING(frame)  # frames (the list) keeps every buffer alive
        with nogil:
            for i in range(n):
                if st[i] == NULL:
                    res[i] = OPUS_BAD_ARG
                else:
                    res[i] = fn(st[i], pcm[i], frame_samples, out + i * MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        return [PyBytes_FromStringAndSize(<char*>out + i * MAX_PACKET_BYTES, res[i]) if res[i] >= 0 else res[i]
                for i in range(n)]
    finally:
        free(st)
        free(pcm)
        free(res)
        free(out)
