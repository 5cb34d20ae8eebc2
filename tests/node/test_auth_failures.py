"""The shared failed-attempt counter (relay/store/auth_failures.py) on SQLite and PostgreSQL: the same
answers as the in-process throttle for the same attempts, counted across connections (as across
nodes), keys stored hashed; relay/auth.py's throttle on it answers as one process would."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from relay.auth import AuthThrottle
from relay.store.auth_failures import SharedThrottle
from relay.store.db import Database
from tests.conftest import base_settings


async def _run(thr: AuthThrottle, db: Database | None, key: str | None, address: str, now: float,
               outcome: str) -> tuple:
    """One attempt through relay/auth.py's throttle, settled as ``outcome``; what the caller would answer."""
    attempt = await thr.attempt(key, address, now, db)
    try:
        if attempt.refused:
            return ("429", attempt.refused)
        if outcome == "wrong":
            over = await attempt.failed()
            return ("429", over) if over else ("401",)
        if outcome == "wrong_workspace_key":
            over = await attempt.failed(key_counts=False)
            return ("429", over) if over else ("401",)
        if outcome == "right" and key is not None:
            await attempt.succeeded()
            return ("200",)
        return ("400",)
    finally:
        await attempt.release()


async def test_workers_on_one_store_throttle_as_one_process(db: Database, tmp_path: Path) -> None:
    """The same attempts, spread at random over three workers (two connections to the store) or all in one
    process without a store, get the same answers, Retry-After included: counted per client id, per token
    and per address, charged up front, given back, known addresses honoured on every worker."""
    settings = base_settings(tmp_path / "data", auth_fail_limit=2, auth_fail_window_s=30)  # 20 per address
    other = await Database.connect(db.url)
    try:
        one = AuthThrottle(settings)
        workers = [(AuthThrottle(settings), db), (AuthThrottle(settings), other), (AuthThrottle(settings), db)]
        rng = random.Random(1510)
        keys = ["client:kitchen", "client:hall", "token:tok_a", None]
        addresses = ["192.0.2.10", "198.51.100.7", "203.0.113.5"]
        outcomes = ["wrong"] * 5 + ["right", "right", "neutral", "wrong_workspace_key"]
        now, answers = 5000.0, []
        for _ in range(400):
            now += rng.choice([0.05, 0.3, 1.0, 2.0, 6.0])
            key, address, outcome = rng.choice(keys), rng.choice(addresses), rng.choice(outcomes)
            thr, conn = rng.choice(workers)
            expected = await _run(one, None, key, address, now, outcome)
            assert await _run(thr, conn, key, address, now, outcome) == expected, (key, address, outcome, now)
            answers.append(expected[0])
        assert {"200", "401", "429"} <= set(answers)  # the walk reached every branch
        assert answers.count("429") >= 20
    finally:
        await other.close()


async def test_parallel_guesses_on_two_nodes_cannot_overrun_the_budget(db: Database, tmp_path: Path) -> None:
    """Guesses in flight at once on two nodes: exactly the budget is charged, the rest refused unchecked."""
    settings = base_settings(tmp_path / "data", auth_fail_limit=4, auth_fail_window_s=60)
    other = await Database.connect(db.url)
    try:
        nodes = [(AuthThrottle(settings), db), (AuthThrottle(settings), other)]
        attempts = await asyncio.gather(*(nodes[i % 2][0].attempt("client:kitchen", f"198.51.100.{i}", 1000.0,
                                                                   nodes[i % 2][1]) for i in range(24)))
        assert sum(1 for a in attempts if not a.refused) == 4
        assert {a.refused for a in attempts if a.refused} == {("auth_client_id", "60")}
        for a in attempts:
            if not a.refused:  # refused ones were answered 429 unchecked
                assert await a.failed() is None
        rows = await db.fetchall("SELECT key_hash FROM auth_failures")
        assert len(rows) == 4 * 2  # client id + address each
        assert all("kitchen" not in r["key_hash"] and "198.51" not in r["key_hash"] and len(r["key_hash"]) == 64
                   for r in rows)  # keys are stored hashed
        # the one rightful attempt from the device's known address still passes on either node
        await db.execute("INSERT INTO auth_known (pair_hash, ok_at) VALUES (?, ?)",
                         SharedThrottle._hash("pair", "client:kitchen\x00192.0.2.10"), 999.0)
        for thr, conn in nodes:
            ok = await thr.attempt("client:kitchen", "192.0.2.10", 1001.0, conn)
            assert ok.refused is None and not ok.charged
    finally:
        await other.close()
