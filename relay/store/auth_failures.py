"""Failed attempts in the shared store: the failed-secret throttle for a fleet.

``SharedThrottle`` is what ``relay.auth.AuthThrottle`` runs on whenever there is a database: its whole
policy (failures per key and per address, charged up front for an attempt from an address the key
never authenticated from, given back on success, the pairs that authenticated shared) in the store,
so a brute force spread over workers and nodes is throttled exactly as one process would throttle
it (``relay.throttle.FailureThrottle``'s policy per key: ``limit`` failures inside the last
``window_s`` seconds block the key until the oldest of its last ``limit`` failures leaves the
window). Keys (client ids, token ids, addresses) and pairs are
stored as SHA-256 hashes. Round trips of each method: its docstring; docs/ops.md ("The failed-secret
throttle across workers and nodes") has the count per call set-up.
"""

from __future__ import annotations

import hashlib
import secrets
import weakref
from dataclasses import dataclass
from typing import Any

from relay.store.db import Database, Executor

PURGE_EVERY = 200  # failures between purges of expired rows


# --- the whole throttle across workers and nodes (used by relay/auth.py's AuthThrottle) -------------

_PG_ATTEMPT = """
CREATE OR REPLACE FUNCTION relay_auth_attempt(p_addr TEXT, p_addr_limit BIGINT, p_key TEXT, p_key_limit BIGINT,
    p_pair TEXT, p_now DOUBLE PRECISION, p_window DOUBLE PRECISION, p_known_after DOUBLE PRECISION,
    p_charge TEXT) RETURNS TEXT AS $fn$
DECLARE
    n BIGINT;
    oldest DOUBLE PRECISION;
BEGIN
    IF p_pair <> '' AND EXISTS (SELECT 1 FROM auth_known WHERE pair_hash = p_pair AND ok_at > p_known_after) THEN
        RETURN 'known';
    END IF;
    PERFORM pg_advisory_xact_lock(7303102, hashtext(p_addr));
    SELECT count(*), min(at) INTO n, oldest FROM (SELECT at FROM auth_failures
        WHERE key_hash = p_addr AND at > p_now - p_window ORDER BY at DESC LIMIT p_addr_limit) t;
    IF n < p_addr_limit AND p_key <> '' THEN
        PERFORM pg_advisory_xact_lock(7303103, hashtext(p_key));
        SELECT count(*), min(at) INTO n, oldest FROM (SELECT at FROM auth_failures
            WHERE key_hash = p_key AND at > p_now - p_window ORDER BY at DESC LIMIT p_key_limit) t;
        IF n >= p_key_limit THEN
            RETURN 'key ' || (oldest + p_window - p_now);
        END IF;
    ELSIF n >= p_addr_limit THEN
        RETURN 'address ' || (oldest + p_window - p_now);
    END IF;
    INSERT INTO auth_failures (key_hash, at, charge) VALUES (p_addr, p_now, p_charge);
    IF p_key <> '' THEN
        INSERT INTO auth_failures (key_hash, at, charge) VALUES (p_key, p_now, p_charge);
    END IF;
    RETURN 'charged';
END
$fn$ LANGUAGE plpgsql VOLATILE
"""

# SQLite has one writer at a time: the charge is one conditional INSERT of both rows.
_SQLITE_CHARGE = (
    "INSERT INTO auth_failures (key_hash, at, charge) "
    "SELECT k, ?, ? FROM (SELECT ? AS k UNION ALL SELECT ? WHERE ? <> '') "
    "WHERE NOT EXISTS (SELECT 1 FROM auth_known WHERE pair_hash = ? AND ok_at > ?) "
    "AND (SELECT count(*) FROM auth_failures WHERE key_hash = ? AND at > ?) < ? "
    "AND (? = '' OR (SELECT count(*) FROM auth_failures WHERE key_hash = ? AND at > ?) < ?)"
)

# the oldest of a key's last ``limit`` failures inside the window, and how many there are (<= limit)
_LAST = ("SELECT ? AS which, count(*) AS n, min(at) AS oldest FROM (SELECT at FROM auth_failures "
         "WHERE key_hash = ? AND at > ? ORDER BY at DESC LIMIT ?) t")


_READY: weakref.WeakSet[Any] = weakref.WeakSet()  # databases whose relay_auth_attempt() this process (re)created


async def ensure_schema(db: Database) -> None:
    """PostgreSQL: (re)create ``relay_auth_attempt`` (idempotent; serialized across nodes; run at start-up by
    ``relay.store.live_calls.ensure_schema``, else on first use). SQLite: nothing."""
    if db.dialect == "postgresql":
        async with db.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(7303005)")
            await tx.execute(_PG_ATTEMPT)
    _READY.add(db)


@dataclass(frozen=True)
class SharedAttempt:
    """What the store said of an attempt: ``known`` (the pair authenticated before: check the secret
    first, nothing charged), ``refused`` (``("address"|"key", seconds to wait)``: answer 429
    unchecked), or ``charge`` (the tag of the failures charged up front for the address and the key)."""

    known: bool = False
    refused: tuple[str, float] | None = None
    charge: str = ""


class SharedThrottle:
    """``relay.auth.AuthThrottle``'s policy for a fleet, in the store: failures per key (a client id,
    a token id) and per address, charged up front for an attempt from an address the key never
    authenticated from (atomically: on PostgreSQL ``relay_auth_attempt()`` takes an advisory lock per
    address and per key before it counts and charges; on SQLite one conditional INSERT), given back
    when the attempt succeeds or ends neither right nor wrong, kept when it fails. The pairs that
    authenticated (``auth_known``) are shared too, so an attacker elsewhere cannot lock the rightful
    device out on any worker. Keys, addresses and pairs are stored as SHA-256 hashes.

    Round trips: ``attempt`` 1 (SQLite: a second one only when nothing was charged), ``succeeded`` 1
    (PostgreSQL; SQLite 2), ``give_back`` 1, ``failed`` 2 (read, then record). The caller remembers
    known pairs in its process, so a device calling again from its address costs none."""

    def __init__(self, db: Executor, *, key_limit: int, address_limit: int, window_s: float,
                 known_s: float) -> None:
        self.db = db
        self.key_limit = key_limit
        self.address_limit = address_limit
        self.window_s = window_s
        self.known_s = known_s
        self._writes = 0
        self._function_ready = db in _READY

    @staticmethod
    def _hash(kind: str, value: str) -> str:
        return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()

    def _hashes(self, key: str | None, address: str) -> tuple[str, str, str]:
        return (self._hash("address", address), self._hash("key", key) if key is not None else "",
                self._hash("pair", f"{key}\0{address}") if key is not None else "")

    async def _ensure_function(self) -> None:
        if not self._function_ready and getattr(self.db, "dialect", "") == "postgresql":
            await ensure_schema(self.db)  # type: ignore[arg-type]
        self._function_ready = True

    async def attempt(self, key: str | None, address: str, now: float) -> SharedAttempt:
        """Charge an attempt at ``key`` from ``address`` if both are within budget (one round trip)."""
        addr, k, pair = self._hashes(key, address)
        charge = secrets.token_hex(16)
        if getattr(self.db, "dialect", "") == "postgresql":
            await self._ensure_function()
            row = await self.db.fetchone(
                "SELECT relay_auth_attempt(?, ?, ?, ?, ?, ?, ?, ?, ?) AS verdict", addr, self.address_limit, k,
                self.key_limit, pair, now, float(self.window_s), now - self.known_s, charge)
            verdict = str((row or {}).get("verdict") or "")
            if verdict == "charged":
                await self._wrote(now)
                return SharedAttempt(charge=charge)
            if verdict == "known":
                return SharedAttempt(known=True)
            which, _, wait = verdict.partition(" ")
            return SharedAttempt(refused=(which, max(float(wait), 0.0)))
        since = now - self.window_s
        inserted = await self.db.execute(_SQLITE_CHARGE, now, charge, addr, k, k, pair, now - self.known_s,
                                         addr, since, self.address_limit,
                                         k, k, since, self.key_limit)
        if inserted:
            await self._wrote(now)
            return SharedAttempt(charge=charge)
        if pair and await self.db.fetchone("SELECT 1 AS one FROM auth_known WHERE pair_hash = ? AND ok_at > ?",
                                           pair, now - self.known_s):
            return SharedAttempt(known=True)
        return SharedAttempt(refused=await self.over(key, address, now) or ("address", 0.0))

    async def over(self, key: str | None, address: str, now: float) -> tuple[str, float] | None:
        """``("address"|"key", seconds)`` when either is over its budget (the address first), else None."""
        sql, args = self._last(key, address, now)
        return self._verdict(await self.db.fetchall(sql, *args), now)

    def _last(self, key: str | None, address: str, now: float) -> tuple[str, list[Any]]:
        addr, k, _ = self._hashes(key, address)
        since = now - self.window_s
        if k:
            return f"{_LAST} UNION ALL {_LAST}", ["address", addr, since, self.address_limit,
                                                  "key", k, since, self.key_limit]
        return _LAST, ["address", addr, since, self.address_limit]

    def _verdict(self, rows: list[dict[str, Any]], now: float) -> tuple[str, float] | None:
        by = {r["which"]: r for r in rows}
        for which, limit in (("address", self.address_limit), ("key", self.key_limit)):
            r = by.get(which)
            if r is not None and r["n"] >= limit:
                return which, max(float(r["oldest"]) + self.window_s - now, 0.0)
        return None

    async def failed(self, key: str | None, address: str, now: float) -> tuple[str, float] | None:
        """A failure of an attempt that was not charged (from a known address): whether it was over
        budget before it (the caller answers 429 then), and recorded for the address (and ``key``).
        PostgreSQL: one round trip (the count sees the table as it was before the INSERT); SQLite 2."""
        addr, k, _ = self._hashes(key, address)
        insert = "INSERT INTO auth_failures (key_hash, at) VALUES (?, ?)" + (", (?, ?)" if k else "")
        values = [addr, now, k, now] if k else [addr, now]
        sql, args = self._last(key, address, now)
        if getattr(self.db, "dialect", "") == "postgresql":
            rows = await self.db.fetchall(f"WITH recorded AS ({insert}) {sql}", *values, *args)
        else:
            rows = await self.db.fetchall(sql, *args)
            await self.db.execute(insert, *values)
        await self._wrote(now)
        return self._verdict(rows, now)

    async def give_back(self, charge: str, *, key_only: str | None = None) -> None:
        """Take back a charge (the attempt ended neither right nor wrong); with ``key_only``, only the
        key's part (a wrong workspace key counts for the address alone)."""
        if key_only is None:
            await self.db.execute("DELETE FROM auth_failures WHERE charge = ?", charge)
        else:
            await self.db.execute("DELETE FROM auth_failures WHERE charge = ? AND key_hash = ?", charge,
                                  self._hash("key", key_only))

    async def succeeded(self, key: str, address: str, now: float, charge: str = "") -> None:
        """``key`` authenticated from ``address``: its charge given back, the pair known fleet-wide."""
        _, _, pair = self._hashes(key, address)
        remember = ("INSERT INTO auth_known (pair_hash, ok_at) VALUES (?, ?) "
                    "ON CONFLICT (pair_hash) DO UPDATE SET ok_at = excluded.ok_at")
        if charge and getattr(self.db, "dialect", "") == "postgresql":
            await self.db.execute(f"WITH given_back AS (DELETE FROM auth_failures WHERE charge = ?) {remember}",
                                  charge, pair, now)
        else:
            if charge:
                await self.give_back(charge)
            await self.db.execute(remember, pair, now)
        await self._wrote(now)

    async def _wrote(self, now: float) -> None:
        self._writes += 1
        if self._writes >= PURGE_EVERY:
            self._writes = 0
            await self.db.execute("DELETE FROM auth_failures WHERE at <= ?", now - self.window_s)
            await self.db.execute("DELETE FROM auth_known WHERE ok_at <= ?", now - self.known_s)
