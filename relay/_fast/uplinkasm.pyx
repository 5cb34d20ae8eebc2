# cython: language_level=3
"""The uplink assembler, compiled (contract: ``uplinkasm_py``).

libopus is called through the address of ``opus_decode`` (the library ``relay.media.opus`` loads)
with the GIL held: one decode is tens of microseconds, shorter than a GIL hand-off would cost.
``push_packet`` is the C entry the worker's ICE port (``udpbatch.MuxReceiver``) calls for each SRTP
audio packet it takes, so the uplink runs no Python per packet; ``on_chunk`` is the one Python call,
once per chunk.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uintptr_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset

from relay._fast.uplinkasm_py import check_args

ctypedef int (*opus_decode_fn)(void* st, const unsigned char* data, int32_t length, short* pcm, int frame_size,
                               int decode_fec) noexcept nogil

DEF CONCEAL_MS = 20
DEF G711_CONCEAL_BYTES = 160
DEF MAX_FRAME_MS = 120


cdef class UplinkAssembler:
    def __cinit__(self):
        self._expected = -1
        self._held = NULL
        self._buf = NULL

    def __init__(self, decoder, decode_fn, int silence_byte, *, Py_ssize_t chunk_bytes, on_chunk, int max_hold=3,
                 int max_conceal=5, double max_packets_per_s=100.0):
        check_args(decoder, silence_byte, chunk_bytes, on_chunk, max_hold, max_conceal, max_packets_per_s)
        if self._held != NULL:
            raise RuntimeError("already initialised")
        if decoder is not None:
            if not decoder.state:
                raise ValueError("the decoder is closed")
            if not decode_fn:
                raise ValueError("no opus_decode function")
            self._dec = <void*><uintptr_t>decoder.state
            self._decode_fn = <void*><uintptr_t>decode_fn
            self._conceal_samples = decoder.rate_hz * CONCEAL_MS // 1000
            self._max_samples = decoder.rate_hz * MAX_FRAME_MS // 1000
        self._decoder = decoder
        self._silence = <unsigned char>silence_byte
        self.chunk_bytes = chunk_bytes
        self._on_chunk = on_chunk
        self._max_hold = max_hold
        self._max_conceal = max_conceal
        self._rate = max_packets_per_s
        self._burst = max_packets_per_s / 2
        self._tokens = self._burst
        self._held = <Held*>malloc((max_hold + 1) * sizeof(Held))
        if self._held == NULL:
            raise MemoryError()
        memset(self._held, 0, (max_hold + 1) * sizeof(Held))
        self._cap = chunk_bytes + 2 * self._max_samples + G711_CONCEAL_BYTES
        self._buf = <unsigned char*>malloc(self._cap)
        if self._buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef int i
        if self._held != NULL:
            for i in range(self._max_hold + 1):
                free(self._held[i].data)
            free(self._held)
        free(self._buf)

    # -- input
    def push(self, seq, payload, arrival_s=None):
        self._push_py(seq, payload, arrival_s, False)

    def push_direct(self, seq, payload, arrival_s=None):
        self._push_py(seq, payload, arrival_s, True)

    def __call__(self, seq, payload, arrival_s=None):
        self._push_py(seq, payload, arrival_s, True)

    cdef int _push_py(self, seq, payload, arrival_s, bint direct) except -1:
        cdef Py_buffer view
        cdef double now
        if not 0 <= seq <= 0xFFFF:
            raise ValueError("a sequence number is 0..65535")
        if isinstance(payload, str):
            raise TypeError("payload must be bytes-like, not str")
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            now = monotonic_s() if arrival_s is None else <double>arrival_s
            return self.push_packet(<int>seq, <const unsigned char*>view.buf, view.len, now, direct)
        finally:
            PyBuffer_Release(&view)

    cdef int push_packet(self, int seq, const unsigned char* data, Py_ssize_t length, double now,
                         bint direct) except -1:
        cdef int delta, i
        cdef Held* h
        if self.closed:
            return 0
        self.packets += 1
        if direct:
            self.direct += 1
        if self._has_last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._has_last = True
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
        else:
            self.flood += 1
            return 0
        if self._expected < 0:
            self._expected = seq
        delta = (seq - self._expected) & 0xFFFF
        if delta >= 0x8000:
            self.late += 1
            return 0
        if delta == 0:
            self._consume(data, length, now)
            self._expected = (seq + 1) & 0xFFFF
            self._drain_held()
        elif self._find(seq) < 0:
            h = &self._held[self._nheld]
            if h.capacity < length:
                free(h.data)
                h.data = <unsigned char*>malloc(length if length > 0 else 1)
                h.capacity = 0
                if h.data == NULL:
                    raise MemoryError()
                h.capacity = length
            if length:
                memcpy(h.data, data, length)
            h.length = length
            h.seq = seq
            h.arrival = now
            self._nheld += 1
            if self._nheld > self._max_hold:
                self._skip_gap(now)
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return 0

    def take_counts(self):
        out = (self.packets, self.flood, self.late, self.lost, self.bad, self.direct)
        self.packets = self.flood = self.late = self.lost = self.bad = self.direct = 0
        return out

    def close(self):
        if self.closed:
            return
        self.closed = True
        self._nheld = 0
        self._len = 0
        self._dec = NULL
        if self._decoder is not None:
            self._decoder.close()

    # -- internals
    cdef int _find(self, int seq) noexcept:
        cdef int i
        for i in range(self._nheld):
            if self._held[i].seq == seq:
                return i
        return -1

    cdef int _drain_held(self) except -1:
        cdef int i
        cdef Held tmp
        while not self.closed:
            i = self._find(self._expected)
            if i < 0:
                return 0
            # take it out (swap with the last: order does not matter), keeping both buffers
            tmp = self._held[i]
            self._nheld -= 1
            self._held[i] = self._held[self._nheld]
            self._held[self._nheld] = tmp
            self._consume(tmp.data, tmp.length, tmp.arrival)
            self._expected = (self._expected + 1) & 0xFFFF
        return 0

    cdef int _skip_gap(self, double now) except -1:
        cdef int i, best = 0, d, best_d = 0x10000, lost, frames, k
        for i in range(self._nheld):
            d = (self._held[i].seq - self._expected) & 0xFFFF
            if d < best_d:
                best_d = d
                best = i
        nearest = self._held[best].seq
        lost = best_d
        self.lost += lost
        frames = min(lost, self._max_conceal)
        for k in range(frames - 1):
            self._conceal(now)
        if frames:
            i = self._find(nearest)  # the concealment may have closed the assembler (held cleared)
            if i < 0:
                self._recover(NULL, 0, now)
            else:
                self._recover(self._held[i].data, self._held[i].length, now)
        self._expected = nearest
        self._drain_held()
        return 0

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t want = self._len + extra
        cdef unsigned char* grown
        if want > self._cap:
            grown = <unsigned char*>realloc(self._buf, want)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._cap = want
        return 0

    cdef int _decode(self, const unsigned char* data, Py_ssize_t length, int frame_size, int fec) except -1:
        """Decode into the chunk buffer: samples decoded, or a negative libopus error."""
        self._reserve(2 * frame_size)
        return (<opus_decode_fn>self._decode_fn)(self._dec, data, <int32_t>length,
                                                <short*>(self._buf + self._len), frame_size, fec)

    cdef int _recover(self, const unsigned char* data, Py_ssize_t length, double now) except -1:
        cdef int n
        if self.closed:
            return 0
        if self._decoder is None or length == 0:
            return self._conceal(now)
        n = self._decode(data, length, self._conceal_samples, 1)
        if n < 0:
            return self._conceal(now)
        self._len += 2 * n
        return self._emit(now)

    cdef int _conceal(self, double now) except -1:
        cdef int n
        if self.closed:
            return 0
        if self._decoder is None:
            self._reserve(G711_CONCEAL_BYTES)
            memset(self._buf + self._len, self._silence, G711_CONCEAL_BYTES)
            self._len += G711_CONCEAL_BYTES
            return self._emit(now)
        n = self._decode(NULL, 0, self._conceal_samples, 0)
        if n < 0:
            self.bad += 1
            return 0
        self._len += 2 * n
        return self._emit(now)

    cdef int _consume(self, const unsigned char* data, Py_ssize_t length, double arrival) except -1:
        cdef int n
        if length == 0 or self.closed:
            return 0
        if self._decoder is None:
            self._reserve(length)
            memcpy(self._buf + self._len, data, length)
            self._len += length
            return self._emit(arrival)
        n = self._decode(data, length, self._max_samples, 0)
        if n < 0:
            self.bad += 1
            return 0
        self._len += 2 * n
        return self._emit(arrival)

    cdef int _emit(self, double arrival) except -1:
        cdef Py_ssize_t n = self.chunk_bytes, done = 0
        while self._len - done >= n and not self.closed:
            chunk = PyBytes_FromStringAndSize(<char*>self._buf + done, n)
            done += n
            try:
                self._on_chunk(chunk, arrival)
            except Exception as exc:  # raised from push once this packet is done
                if self._error is None:
                    self._error = exc
        if self.closed:  # on_chunk closed it: the buffer is cleared
            return 0
        if done:
            self._len -= done
            memmove(self._buf, self._buf + done, self._len)
        return 0
