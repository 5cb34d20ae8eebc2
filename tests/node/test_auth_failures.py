"""The shared failed-attempt counter (relay/store/auth_failures.py) on SQLite and PostgreSQL: the same
answers as the in-process throttle for the same attempts, counted across connections (as across
nodes), keys stored hashed."""

from __future__ import annotations

import random

from relay.store.auth_failures import SharedFailureLog
from relay.store.db import Database
from relay.throttle import FailureThrottle


async def test_same_policy_as_the_in_process_throttle(db: Database) -> None:
    rng = random.Random(15)
    memory = FailureThrottle(3, 10.0)
    shared = SharedFailureLog(db, limit=3, window_s=10.0, scope="client")
    now = 1000.0
    for _ in range(120):
        now += rng.choice([0.2, 0.5, 1.0, 3.0, 7.0])
        key = rng.choice(["kitchen", "hall"])
        expected = memory.retry_after_s(key, now)
        assert abs(await shared.retry_after_s(key, now) - expected) < 1e-6, (key, now)
        assert await shared.retry_after_header(key, now) == memory.retry_after_header(key, now)
        if expected:
            continue  # refused while blocked: not counted, as relay/auth.py does
        if rng.random() < 0.1:
            memory.success(key)
            await shared.success(key)
        else:
            memory.failure(key, now)
            await shared.failure(key, now)


async def test_failures_on_two_nodes_add_up_and_keys_are_hashed(db: Database) -> None:
    other = await Database.connect(db.url)
    try:
        a = SharedFailureLog(db, limit=4, window_s=60.0, scope="address")
        b = SharedFailureLog(other, limit=4, window_s=60.0, scope="address")
        for log, t in ((a, 1.0), (b, 2.0), (a, 3.0)):
            await log.failure("198.51.100.7", 1000.0 + t)
        assert await b.retry_after_s("198.51.100.7", 1004.0) == 0.0
        await b.failure("198.51.100.7", 1004.0)  # the fourth, on the other node
        assert await a.retry_after_s("198.51.100.7", 1005.0) == 56.0  # until the first leaves the window
        other_scope = SharedFailureLog(db, limit=4, window_s=60.0, scope="client")
        assert await other_scope.retry_after_s("198.51.100.7", 1005.0) == 0.0
        rows = await db.fetchall("SELECT key_hash FROM auth_failures")
        assert rows and all("198.51" not in r["key_hash"] and len(r["key_hash"]) == 64 for r in rows)
    finally:
        await other.close()
