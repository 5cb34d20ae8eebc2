"""Downlink playout buffer with played-milliseconds accounting per response item.

Pure-Python reference twin of ``playout.pyx``. Sans-I/O: the caller (the
per-worker media clock) calls ``pop_frame()`` once per frame period.

Semantics:

* Items play in push order. ``push(item_id, data)`` appends audio to the
  newest item; pushing a *new* item id implicitly finishes the previous one.
  Audio for an item that is finished, cleared, or no longer the newest is
  refused (returns 0; not counted as overflow).
* At most ``capacity_ms`` of audio is held; the excess of a push is dropped and
  counted in ``overflow_bytes``. At most ``MAX_QUEUED_ITEMS`` items are queued
  (a push creating one more is dropped and counted as overflow).
* ``pop_frame()`` returns exactly ``frame_ms`` of audio, or ``None`` when the
  current item has less than a frame buffered and is not finished (the caller
  plays silence). A finished item's last partial frame is padded with
  ``silence_byte``; the padding never counts as played. Frames never mix two
  items.
* ``clear()`` drops everything queued and returns ``(item_id, played_ms)`` of
  the item being played (the head of the queue), or ``(None, 0)``. Cleared
  items refuse further audio (late deltas after a barge-in never play).
* Accounting (``played_ms``/``received_ms``) is kept for queued items and the
  ``HISTORY_ITEMS`` most recent others; unknown items report 0.
* ``played_ms`` and ``received_ms`` round down to whole milliseconds.
  ``data`` should hold whole samples.
"""

from __future__ import annotations

from collections import deque

HISTORY_ITEMS = 8
MAX_QUEUED_ITEMS = 256
_COMPACT_BYTES = 65536


class _Item:
    __slots__ = ("item_id", "received", "played", "queued", "finished")

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        self.received = 0
        self.played = 0
        self.queued = 0
        self.finished = False


def _positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class PlayoutBuffer:
    def __init__(self, bytes_per_ms: int, frame_ms: int = 20, capacity_ms: int = 120000, silence_byte: int = 0) -> None:
        self._bpm = _positive_int("bytes_per_ms", bytes_per_ms)
        _positive_int("frame_ms", frame_ms)
        _positive_int("capacity_ms", capacity_ms)
        if capacity_ms < frame_ms:
            raise ValueError(f"capacity_ms ({capacity_ms}) must be >= frame_ms ({frame_ms})")
        if not isinstance(silence_byte, int) or isinstance(silence_byte, bool) or not 0 <= silence_byte <= 255:
            raise ValueError(f"silence_byte must be an int in 0..255, got {silence_byte!r}")
        self._frame_ms = frame_ms
        self._frame_bytes = bytes_per_ms * frame_ms
        self._capacity_bytes = bytes_per_ms * capacity_ms
        self._silence_byte = silence_byte
        self._buf = bytearray()
        self._read = 0
        self._queue: deque[_Item] = deque()
        self._items: dict[str, _Item] = {}
        self._overflow = 0

    # -- properties ---------------------------------------------------------
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
    def current_item(self) -> str | None:
        return self._queue[0].item_id if self._queue else None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._read

    @property
    def buffered_ms(self) -> int:
        return (len(self._buf) - self._read) // self._bpm

    @property
    def overflow_bytes(self) -> int:
        return self._overflow

    def played_ms(self, item_id: str) -> int:
        item = self._items.get(item_id)
        return item.played // self._bpm if item is not None else 0

    def received_ms(self, item_id: str) -> int:
        item = self._items.get(item_id)
        return item.received // self._bpm if item is not None else 0

    # -- input --------------------------------------------------------------
    def _remember(self, item: _Item) -> None:
        items = self._items
        items[item.item_id] = item
        keep = max(HISTORY_ITEMS, len(self._queue))
        while len(items) > keep:
            # queued items are always the newest ones, so the oldest is not queued
            del items[next(iter(items))]

    def push(self, item_id: str, data: bytes) -> int:
        if not isinstance(item_id, str):
            raise TypeError(f"item_id must be str, got {type(item_id).__name__}")
        data = memoryview(data).cast("B")  # any bytes-like object; TypeError otherwise
        n = len(data)
        item = self._items.get(item_id)
        if item is None:
            if len(self._queue) >= MAX_QUEUED_ITEMS:
                self._overflow += n
                return 0
            if self._queue:
                self._queue[-1].finished = True
            item = _Item(item_id)
            self._queue.append(item)
            self._remember(item)
        elif item.finished or not self._queue or self._queue[-1] is not item:
            return 0
        room = self._capacity_bytes - (len(self._buf) - self._read)
        take = n if n <= room else room
        if take < n:
            self._overflow += n - take
        self._buf += data[:take]
        item.received += take
        item.queued += take
        return take

    def finish(self, item_id: str) -> None:
        item = self._items.get(item_id)
        if item is not None:
            item.finished = True

    # -- output -------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        r = self._read
        out = bytes(self._buf[r : r + n])
        r += n
        if r >= _COMPACT_BYTES and r * 2 >= len(self._buf):
            del self._buf[:r]
            r = 0
        elif r == len(self._buf):
            self._buf.clear()
            r = 0
        self._read = r
        return out

    def pop_frame(self) -> bytes | None:
        fb = self._frame_bytes
        queue = self._queue
        while queue:
            head = queue[0]
            if head.queued >= fb:
                head.queued -= fb
                head.played += fb
                if head.queued == 0 and head.finished:
                    queue.popleft()
                return self._take(fb)
            if not head.finished:
                return None
            queue.popleft()
            n = head.queued
            if n:
                head.queued = 0
                head.played += n
                return self._take(n) + bytes([self._silence_byte]) * (fb - n)
        return None

    def clear(self) -> tuple[str | None, int]:
        queue = self._queue
        if queue:
            head = queue[0]
            result: tuple[str | None, int] = (head.item_id, head.played // self._bpm)
        else:
            result = (None, 0)
        for item in queue:
            item.finished = True
            item.queued = 0
        queue.clear()
        self._buf.clear()
        self._read = 0
        return result
