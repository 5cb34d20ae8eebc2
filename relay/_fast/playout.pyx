# cython: language_level=3
"""Downlink playout buffer (compiled twin of ``playout_py``; see it for the semantics).

Storage is one malloc'd byte buffer with read/write offsets: pushes append,
pops advance the read offset; the live bytes are moved to the front only when
the tail is full and the buffer is grown so that it is at most half full after
the move, so every operation is O(1) amortised. Memory is bounded by twice
``capacity_ms`` and returned when the buffer drains.
"""

from collections import deque

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from relay._fast._buffer cimport as_bytes, bytes_ptr
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memmove, memset

HISTORY_ITEMS = 8
MAX_QUEUED_ITEMS = 256
cdef Py_ssize_t _HISTORY_ITEMS = 8
cdef Py_ssize_t _MAX_QUEUED_ITEMS = 256
cdef Py_ssize_t _KEEP_BYTES = 65536  # buffer kept allocated when drained


cdef class _Item:
    def __cinit__(self, str item_id):
        self.item_id = item_id


cdef Py_ssize_t _positive_int(str name, object value) except -1:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


cdef class PlayoutBuffer:
    def __cinit__(self, *args, **kwargs):
        self._buf = NULL
        self._cap = 0
        self._rd = 0
        self._wr = 0

    def __init__(self, bytes_per_ms, frame_ms=20, capacity_ms=120000, silence_byte=0):
        self._bpm = _positive_int("bytes_per_ms", bytes_per_ms)
        _positive_int("frame_ms", frame_ms)
        _positive_int("capacity_ms", capacity_ms)
        if capacity_ms < frame_ms:
            raise ValueError(f"capacity_ms ({capacity_ms}) must be >= frame_ms ({frame_ms})")
        if not isinstance(silence_byte, int) or isinstance(silence_byte, bool) or not 0 <= silence_byte <= 255:
            raise ValueError(f"silence_byte must be an int in 0..255, got {silence_byte!r}")
        self._frame_ms = frame_ms
        self._frame_bytes = self._bpm * frame_ms
        self._capacity_bytes = self._bpm * capacity_ms
        self._silence_byte = silence_byte
        self._queue = deque()
        self._items = {}
        self._overflow = 0

    def __dealloc__(self):
        free(self._buf)

    # -- storage --------------------------------------------------------------
    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t live = self._wr - self._rd
        cdef Py_ssize_t new_cap
        cdef uint8_t* p
        if self._wr + n <= self._cap:
            return 0
        if live + n > self._cap // 2:
            new_cap = 2 * (live + n)
            if new_cap < 4096:
                new_cap = 4096
            p = <uint8_t*>realloc(self._buf, new_cap)
            if p == NULL:
                raise MemoryError()
            self._buf = p
            self._cap = new_cap
        if self._rd:
            memmove(self._buf, self._buf + self._rd, live)
            self._rd = 0
            self._wr = live
        return 0

    cdef void _release(self) noexcept:
        self._rd = 0
        self._wr = 0
        if self._cap > _KEEP_BYTES:
            free(self._buf)
            self._buf = NULL
            self._cap = 0

    cdef bytes _take(self, Py_ssize_t n, Py_ssize_t frame):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, frame)
        cdef char* o = PyBytes_AS_STRING(out)
        if n:
            memcpy(o, self._buf + self._rd, n)
        if frame > n:
            memset(o + n, self._silence_byte, frame - n)
        self._rd += n
        if self._rd == self._wr:
            self._release()
        return out

    # -- properties -----------------------------------------------------------
    @property
    def frame_ms(self) -> int:
        return self._frame_ms

    @property
    def frame_bytes(self) -> int:
        return self._frame_bytes

    @property
    def bytes_per_ms(self) -> int:
        return self._bpm

    @property
    def current_item(self):
        if self._queue:
            return (<_Item>self._queue[0]).item_id
        return None

    @property
    def buffered_bytes(self) -> int:
        return self._wr - self._rd

    @property
    def buffered_ms(self) -> int:
        return (self._wr - self._rd) // self._bpm

    @property
    def overflow_bytes(self) -> int:
        return self._overflow

    def played_ms(self, item_id) -> int:
        item = self._items.get(item_id)
        return (<_Item>item).played // self._bpm if item is not None else 0

    def received_ms(self, item_id) -> int:
        item = self._items.get(item_id)
        return (<_Item>item).received // self._bpm if item is not None else 0

    # -- input ----------------------------------------------------------------
    cdef _remember(self, _Item item):
        cdef dict items = self._items
        items[item.item_id] = item
        cdef Py_ssize_t keep = max(_HISTORY_ITEMS, len(self._queue))
        while len(items) > keep:
            del items[next(iter(items))]

    def push(self, str item_id not None, data) -> int:
        cdef bytes b = as_bytes(data)
        cdef Py_ssize_t n = len(b)
        cdef _Item item
        cdef object found = self._items.get(item_id)
        queue = self._queue
        if found is None:
            if len(queue) >= _MAX_QUEUED_ITEMS:
                self._overflow += n
                return 0
            if queue:
                (<_Item>queue[len(queue) - 1]).finished = True
            item = _Item(item_id)
            queue.append(item)
            self._remember(item)
        else:
            item = <_Item>found
            if item.finished or not queue or queue[len(queue) - 1] is not item:
                return 0
        cdef Py_ssize_t room = self._capacity_bytes - (self._wr - self._rd)
        cdef Py_ssize_t take = n if n <= room else room
        if take < n:
            self._overflow += n - take
        if take:
            self._reserve(take)
            memcpy(self._buf + self._wr, bytes_ptr(b), take)
            self._wr += take
        item.received += take
        item.queued += take
        return take

    def finish(self, str item_id) -> None:
        item = self._items.get(item_id)
        if item is not None:
            (<_Item>item).finished = True

    # -- output ---------------------------------------------------------------
    def pop_frame(self):
        cdef Py_ssize_t fb = self._frame_bytes, n
        cdef _Item head
        queue = self._queue
        while queue:
            head = <_Item>queue[0]
            if head.queued >= fb:
                head.queued -= fb
                head.played += fb
                if head.queued == 0 and head.finished:
                    queue.popleft()
                return self._take(fb, fb)
            if not head.finished:
                return None
            queue.popleft()
            n = head.queued
            if n:
                head.queued = 0
                head.played += n
                return self._take(n, fb)
        return None

    def clear(self):
        cdef _Item head, item
        queue = self._queue
        if queue:
            head = <_Item>queue[0]
            result = (head.item_id, head.played // self._bpm)
        else:
            result = (None, 0)
        for item in queue:
            item.finished = True
            item.queued = 0
        queue.clear()
        self._release()
        return result
