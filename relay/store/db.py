"""``Database``: one small async interface over SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQL is written once, with ``?`` placeholders, in a portable subset: TEXT, INTEGER,
REAL, BLOB (``BYTEA`` on PostgreSQL); booleans as INTEGER 0/1; JSON as TEXT; times as REAL unix seconds. On
PostgreSQL ``?`` is rewritten to ``$n`` (outside string literals), and in
migrations ``REAL`` becomes ``DOUBLE PRECISION`` and ``INTEGER`` becomes ``BIGINT``
(PostgreSQL's REAL is 4 bytes: it would round unix times to minutes).

    db = await Database.connect("sqlite:///relay.db")
    await db.migrate()
    row = await db.fetchone("SELECT * FROM clients WHERE id = ?", cid)
    async with db.transaction() as tx:
        await tx.execute(...)
    await db.close()
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger("relay.store")

MIGRATION_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class DatabaseError(RuntimeError):
    """The database URL or a migration cannot be used."""


class Executor(Protocol):
    async def execute(self, sql: str, *args: Any) -> int: ...
    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None: ...
    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...


def _norm_args(args: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(int(a) if isinstance(a, bool) else a for a in args)


def qmark_to_dollar(sql: str) -> str:
    """Rewrite ``?`` placeholders to ``$1..$n``, leaving string literals and quoted names alone."""
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
            out.append(ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)


def split_statements(script: str) -> list[str]:
    """Split a migration into statements on ``;``, dropping ``--`` comments.

    Migrations keep ``;`` and ``--`` out of string literals.
    """
    lines = [ln.split("--", 1)[0] for ln in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _pg_ddl(stmt: str) -> str:
    stmt = re.sub(r"\bREAL\b", "DOUBLE PRECISION", stmt)
    stmt = re.sub(r"\bBLOB\b", "BYTEA", stmt)
    return re.sub(r"\bINTEGER\b", "BIGINT", stmt)


def _status_count(status: str) -> int:
    # asyncpg returns e.g. "UPDATE 3", "INSERT 0 1", "DELETE 0", "CREATE TABLE".
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def migration_files(directory: Path | None = None) -> list[tuple[str, str, str]]:
    """(version, name, sql) of every migration, in order."""
    found: list[tuple[str, str, str]] = []
    if directory is None:
        base = resources.files("relay.store") / "migrations"
        entries = [(e.name, e) for e in base.iterdir()]
    else:
        entries = [(p.name, p) for p in Path(directory).iterdir()]
    seen: dict[str, str] = {}
    for fname, entry in sorted(entries, key=lambda e: e[0]):
        m = MIGRATION_RE.match(fname)
        if not m:
            continue
        version, name = m.group(1), m.group(2)
        if version in seen:
            raise DatabaseError(f"two migrations numbered {version}: {seen[version]} and {fname}")
        seen[version] = fname
        found.append((version, name, entry.read_text(encoding="utf-8")))
    return found


def _pg_reason(exc: BaseException) -> str:
    """Why a PostgreSQL connection failed, in words (never the URL: it may hold the password)."""
    import asyncpg

    if isinstance(exc, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        return f"authentication failed ({exc}): check the user and password in database_url"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"{exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is PostgreSQL running and listening there?)"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _check_aiosqlite() -> None:
    """The one place relay relies on aiosqlite internals (``Connection._execute`` / ``_conn``)."""
    import aiosqlite

    if not (hasattr(aiosqlite.Connection, "_execute") and hasattr(aiosqlite.Connection, "_conn")):
        raise RuntimeError(f"aiosqlite {getattr(aiosqlite, '__version__', '?')} is not supported: relay's "
                           "store needs Connection._execute and Connection._conn (written against 0.22)")


def _sq_execute(raw: Any, sql: str, args: tuple[Any, ...]) -> int:
    cur = raw.execute(sql, args)
    try:
        return max(cur.rowcount, 0)
    finally:
        cur.close()


def _sq_fetchone(raw: Any, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    cur = raw.execute(sql, args)
    try:
        row = cur.fetchone()
    finally:
        cur.close()
    return dict(row) if row is not None else None


def _sq_fetchall(raw: Any, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = raw.execute(sql, args)
    try:
        rows = cur.fetchall()
    finally:
        cur.close()
    return [dict(r) for r in rows]


def _sq_rollback_if_open(raw: Any) -> None:
    if raw.in_transaction:
        raw.execute("ROLLBACK")


class _SqliteTx:
    """Statements on the aiosqlite connection, each ONE hop to its worker thread and back.

    aiosqlite's public API costs three hops for a ``fetchone`` (execute, fetchone, close the
    cursor) and two for an ``execute``; every hop waits for the event loop's next turn, which
    under load (20 set-ups/s on top of 40 live calls) is milliseconds each. So each statement
    runs whole (execute + fetch + close) in the worker thread through ``Connection._execute``
    (checked at connect by ``_check_aiosqlite``).
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._conn._execute(_sq_execute, self._conn._conn, sql, _norm_args(args))

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        return await self._conn._execute(_sq_fetchone, self._conn._conn, sql, _norm_args(args))

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await self._conn._execute(_sq_fetchall, self._conn._conn, sql, _norm_args(args))

    async def raw(self, sql: str) -> None:
        await self._conn._execute(_sq_execute, self._conn._conn, sql, ())


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        return _status_count(await self._conn.execute(qmark_to_dollar(sql), *_norm_args(args)))

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._conn.fetchrow(qmark_to_dollar(sql), *_norm_args(args))
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._conn.fetch(qmark_to_dollar(sql), *_norm_args(args))]


async def _no_session_reset(conn: Any) -> None:
    """asyncpg's pool hook run when a connection goes back to the pool: nothing to do.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every release, i.e. a second round trip after each of relay's statements. relay never
    leaves session state behind: no ``SET``, ``LISTEN``, cursors or session advisory locks (the
    migration lock is ``pg_advisory_xact_lock``, released at commit); an open transaction is
    still rolled back by asyncpg itself before this hook runs.
    """
    return None


class Database:
    """The store's connection. Use ``Database.connect(url)``; methods as in ``Executor``."""

    dialect: str

    def __init__(self, dialect: str, url: str) -> None:
        self.dialect = dialect
        self.url = url
        self._sqlite: Any = None
        # One SQLite connection. aiosqlite runs its calls one by one (FIFO), so single statements
        # need no lock between themselves; they wait only while a transaction holds or awaits the
        # lock (else they could land between its BEGIN and COMMIT).
        self._sqlite_lock = asyncio.Lock()
        self._sqlite_tx_users = 0
        self._pool: Any = None

    def __repr__(self) -> str:
        return f"Database(dialect={self.dialect!r})"  # the URL may hold a password: never shown

    @classmethod
    async def connect(cls, url: str, *, pool_max: int = 10) -> Database:
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            import aiosqlite

            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else parts.path
            if not path:
                raise DatabaseError("sqlite URL needs a path: sqlite:///path/to/relay.db")
            _check_aiosqlite()
            self = cls("sqlite", url)
            try:
                if path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                conn = await aiosqlite.connect(path, isolation_level=None)
            except (OSError, sqlite3.Error) as exc:
                raise DatabaseError(f"cannot open the SQLite database {path}: "
                                    f"{getattr(exc, 'strerror', None) or exc}") from None
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA foreign_keys = ON")
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: durable against crashes of relay, no fsync per commit.
                await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA busy_timeout = 5000")
            self._sqlite = conn
            return self
        if parts.scheme in ("postgresql", "postgres"):
            import asyncpg

            self = cls("postgresql", url)
            try:
                self._pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_max, reset=_no_session_reset)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise DatabaseError(f"cannot connect to PostgreSQL at {parts.hostname}:{parts.port or 5432}"
                                    f"{parts.path}: {_pg_reason(exc)}") from None
            return self
        raise DatabaseError(f"unsupported database URL scheme {parts.scheme!r} (use sqlite:/// or postgresql://)")

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()
            self._sqlite = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # --- statements outside a transaction (each one atomic) ---------------
    async def execute(self, sql: str, *args: Any) -> int:
        if self._pool is not None:
            async with self._pool.acquire() as conn:
                return await _PgTx(conn).execute(sql, *args)
        return await self._sqlite_statement(_sq_execute, sql, args)

    async def fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        if self._pool is not None:
            async with self._pool.acquire() as conn:
                return await _PgTx(conn).fetchone(sql, *args)
        return await self._sqlite_statement(_sq_fetchone, sql, args)

    async def fetchall(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self._pool is not None:
            async with self._pool.acquire() as conn:
                return await _PgTx(conn).fetchall(sql, *args)
        return await self._sqlite_statement(_sq_fetchall, sql, args)

    async def _sqlite_statement(self, fn: Any, sql: str, args: tuple[Any, ...]) -> Any:
        if self._sqlite_tx_users == 0:  # enqueued before this coroutine yields: no transaction can slip in between
            return await self._sqlite._execute(fn, self._sqlite._conn, sql, _norm_args(args))
        async with self._sqlite_lock:
            return await self._sqlite._execute(fn, self._sqlite._conn, sql, _norm_args(args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """All-or-nothing: commits when the block ends, rolls back if it raises."""
        if self._pool is not None:
            async with self._pool.acquire() as conn, conn.transaction():
                yield _PgTx(conn)
            return
        self._sqlite_tx_users += 1
        try:
            async with self._sqlite_lock:
                tx = _SqliteTx(self._sqlite)
                try:
                    await tx.raw("BEGIN IMMEDIATE")
                    yield tx
                    await tx.raw("COMMIT")
                except BaseException:
                    # Whatever failed or was cancelled -- the block, or BEGIN / COMMIT themselves: a
                    # cancelled statement still runs in aiosqlite's thread, and a failed COMMIT (busy)
                    # leaves the transaction open -- no transaction may outlive the lock. Queued now,
                    # behind anything still queued, before the lock is released.
                    await self._sqlite._execute(_sq_rollback_if_open, self._sqlite._conn)
                    raise
        finally:
            self._sqlite_tx_users -= 1

    # --- migrations ----------------------------------------------------------
    async def has_schema(self) -> bool:
        """Whether relay's tables exist here (a database ``migrate`` ran on)."""
        if self.dialect == "postgresql":
            row = await self.fetchone("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
        else:
            row = await self.fetchone("SELECT COUNT(*) > 0 AS present FROM sqlite_master "
                                      "WHERE type = 'table' AND name = 'schema_migrations'")
        return bool(row and row["present"])

    async def migrate(self, directory: Path | None = None) -> list[str]:
        """Apply every migration not applied yet, each in its own transaction. Returns the applied versions."""
        create = ("CREATE TABLE IF NOT EXISTS schema_migrations "
                  "(version TEXT PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
        await self.execute(_pg_ddl(create) if self.dialect == "postgresql" else create)
        applied: list[str] = []
        for version, name, sql in migration_files(directory):
            async with self.transaction() as tx:
                if self.dialect == "postgresql":
                    # Several nodes may start at once: one migrates, the others wait and then skip.
                    await tx.execute("SELECT pg_advisory_xact_lock(7303003)")
                if await tx.fetchone("SELECT version FROM schema_migrations WHERE version = ?", version):
                    continue
                for stmt in split_statements(sql):
                    await tx.execute(_pg_ddl(stmt) if self.dialect == "postgresql" else stmt)
                await tx.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                                 version, name, time.time())
            log.info("applied migration %s_%s", version, name)
            applied.append(version)
        return applied
