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


ADMIN, SCRAPE = "admin-token-" + "a" * 32, "scrape-token-" + "s" * 32


async def test_operator_tokens_are_throttled_across_app_instances(db: Database, tmp_path: Path, make_app) -> None:
    """Two relay apps on one store (two connections, as two workers or nodes): wrong operator tokens sent
    alternately to either app's admin API, /metrics and media stats add up to one per-address budget
    (ten times ``auth_fail_limit``), after which both answer 429 ``rate_limited`` + Retry-After, even to
    the right token; the store holds the address only hashed. Each app alone saw half of the failures,
    so a per-process throttle would still answer 401 here."""
    other = await Database.connect(db.url)
    try:
        apps = [await make_app(db=db, admin_token=ADMIN, metrics_token=SCRAPE, auth_fail_limit=1),  # 10 per address
                await make_app(db=other, admin_token=ADMIN, metrics_token=SCRAPE, auth_fail_limit=1)]
        paths = ["/admin/v1/clients", "/metrics", "/v1/realtime/stats"]
        wrong = {"Authorization": "Bearer wrong-" + "x" * 32}
        for i in range(10):
            resp = await apps[i % 2].get(paths[i % 3], headers=wrong)
            assert resp.status == 401, (i, await resp.text())
        right = {"/admin/v1/clients": ADMIN, "/metrics": SCRAPE, "/v1/realtime/stats": ADMIN}
        for app in apps:
            for path, token in right.items():
                resp = await app.get(path, headers={"Authorization": f"Bearer {token}"})
                assert resp.status == 429, (path, await resp.text())
                assert (await resp.json())["error"]["code"] == "rate_limited"
                assert int(resp.headers["Retry-After"]) >= 1
        rows = await db.fetchall("SELECT key_hash FROM auth_failures")
        assert len(rows) == 10 and all(len(r["key_hash"]) == 64 and "127.0.0.1" not in r["key_hash"] for r in rows)
    finally:
        await other.close()


async def test_right_operator_tokens_leave_no_charge_and_devices_keep_their_budget(db: Database, tmp_path: Path,
                                                                                   make_app) -> None:
    """A right token's up-front charge is given back (scrapes never spend the budget), and operator-token
    failures are an address budget of their own: devices failing from the same address do not spend it."""
    app = await make_app(db=db, admin_token=ADMIN, metrics_token=SCRAPE, auth_fail_limit=1)
    for _ in range(25):
        assert (await app.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})).status == 200
    assert await db.fetchall("SELECT key_hash FROM auth_failures") == []
    thr = AuthThrottle(base_settings(tmp_path / "data", auth_fail_limit=1))
    for i in range(10):  # ten failed device secrets from the operator's address fill the devices' budget there
        attempt = await thr.attempt(f"client:{i}", "127.0.0.1", 1e10, db)
        assert attempt.refused is None
        await attempt.failed()
    assert (await thr.attempt("client:x", "127.0.0.1", 1e10, db)).refused is not None
    assert (await app.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})).status == 200


async def test_operator_tokens_keep_working_when_the_store_is_gone(tmp_path: Path, make_app, caplog) -> None:
    """With the store unreachable (closed under the app) /metrics still answers the right token and the
    wrong ones are throttled in the process: 401 up to the budget, then 429."""
    database = await Database.connect(f"sqlite:///{tmp_path / 'gone.db'}")
    await database.migrate()
    app = await make_app(db=database, admin_token=ADMIN, metrics_token=SCRAPE, auth_fail_limit=1)
    await database.close()
    assert (await app.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})).status == 200
    for _ in range(10):
        assert (await app.get("/metrics", headers={"Authorization": "Bearer nope"})).status == 401
    resp = await app.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
    assert resp.status == 429 and (await resp.json())["error"]["code"] == "rate_limited"
    assert any("operator tokens are throttled in this process" in r.getMessage() for r in caplog.records)
