"""Failed attempts in the shared store: the failed-secret throttle's counter for a fleet.

``SharedFailureLog`` keeps ``relay.throttle.FailureThrottle``'s policy exactly -- a key with
``limit`` failures inside the last ``window_s`` seconds is blocked until the oldest of its last
``limit`` failures leaves the window; the caller does not count attempts refused while blocked;
a success forgets the key -- but in the database, so a brute force spread over workers and nodes
is counted as one process would count it. Each method is one round trip (``failure`` also
purges rows older than the window now and then). Keys (client ids, addresses) are stored as
SHA-256 hashes, with a ``scope`` so two throttles never share keys. The throttle decides where
to use it (relay/auth.py); this module only counts.
"""

from __future__ import annotations

import hashlib
import math
import time

from relay.store.db import Executor

PURGE_EVERY = 200  # failures between purges of expired rows


class SharedFailureLog:
    def __init__(self, db: Executor, *, limit: int, window_s: float, scope: str) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit and window_s must be positive")
        self.db = db
        self.limit = limit
        self.window_s = window_s
        self.scope = scope
        self._since_purge = 0

    def _key(self, key: str) -> str:
        return hashlib.sha256(f"{self.scope}\0{key}".encode()).hexdigest()

    async def retry_after_s(self, key: str, now: float | None = None) -> float:
        """0 when ``key`` may try now; else the seconds until it may."""
        now = time.time() if now is None else now
        rows = await self.db.fetchall(
            "SELECT at FROM auth_failures WHERE key_hash = ? AND at > ? ORDER BY at DESC LIMIT ?",
            self._key(key), now - self.window_s, self.limit)
        if len(rows) < self.limit:
            return 0.0
        return max(min(float(r["at"]) for r in rows) + self.window_s - now, 0.0)

    async def retry_after_header(self, key: str, now: float | None = None) -> str | None:
        wait = await self.retry_after_s(key, now)
        return str(max(1, math.ceil(wait))) if wait > 0 else None

    async def failure(self, key: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        await self.db.execute("INSERT INTO auth_failures (key_hash, at) VALUES (?, ?)", self._key(key), now)
        self._since_purge += 1
        if self._since_purge >= PURGE_EVERY:
            self._since_purge = 0
            await self.db.execute("DELETE FROM auth_failures WHERE at <= ?", now - self.window_s)

    async def success(self, key: str) -> None:
        """Forget ``key``'s failures (the rightful owner proved itself)."""
        await self.db.execute("DELETE FROM auth_failures WHERE key_hash = ?", self._key(key))
