"""Sans-I/O throttle of failed attempts: a sliding-window log per key, ``now`` passed in.

A key (a client id, a remote address) with ``limit`` failures inside the last
``window_s`` seconds is blocked until the oldest of them leaves the window, so
the rightful device is never locked out for longer than ``window_s`` after the
last counted failure. Attempts refused while blocked are not counted (an
attacker cannot extend the block by hammering). Memory is bounded: at most
``max_keys`` keys are tracked, least recently failed evicted first.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque


class FailureThrottle:
    def __init__(self, limit: int, window_s: float, *, max_keys: int = 100_000) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit, window_s and max_keys must be positive")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fails)

    def _live(self, key: str, now: float) -> deque[float] | None:
        times = self._fails.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._fails[key]
            return None
        return times

    def retry_after_s(self, key: str, now: float) -> float:
        """0 when ``key`` may try now; else the seconds until it may."""
        times = self._live(key, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(times[0] + self.window_s - now, 0.0)

    def retry_after_header(self, key: str, now: float) -> str | None:
        """The ``Retry-After`` value (whole seconds, at least 1) when blocked, else None."""
        wait = self.retry_after_s(key, now)
        return str(max(1, math.ceil(wait))) if wait > 0 else None

    def failure(self, key: str, now: float) -> None:
        times = self._live(key, now)
        if times is None:
            times = deque(maxlen=self.limit)
            self._fails[key] = times
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)
        else:
            self._fails.move_to_end(key)
        times.append(now)

    def undo(self, key: str, now: float) -> None:
        """Take back one failure recorded at ``now`` (an attempt charged up front that did not fail)."""
        times = self._fails.get(key)
        if times is None:
            return
        try:
            times.remove(now)
        except ValueError:
            return
        if not times:
            del self._fails[key]

    def success(self, key: str) -> None:
        """Forget ``key``'s failures (the rightful owner proved itself)."""
        self._fails.pop(key, None)
