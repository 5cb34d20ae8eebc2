"""Shared fixtures (see docs/ARCHITECTURE.md, "Tests").

- ``settings``: Settings with a tmp data dir (SQLite there), demo off, ICE on 127.0.0.1, text logs.
- ``make_app(**overrides)`` -> a started aiohttp ``TestClient`` over ``create_app`` (closed at teardown);
  ``app_client``: one with the default ``settings``.
- ``postgres_url``: a throwaway PostgreSQL 15 cluster on 127.0.0.1 (session scope; started with
  initdb/pg_ctl as the ``postgres`` OS user when run as root) -> URL of its maintenance database.
- ``db``: an open, migrated ``Database``, parametrized over ``sqlite`` and ``postgresql``
  (a fresh PostgreSQL database per test).
- ``pg_database_url``: a fresh, empty PostgreSQL database per test (for app-level tests over PostgreSQL).
- ``create_database(data_dir)``: the SQLite database ``relay serve`` would create there (for ``relay admin``
  tests that start no server: admin commands never create a database).
- ``loopback_test_devices`` (autouse, session): plain aiortc peers of the tests (devices) gather ICE host
  candidates on 127.0.0.1 only. relay's peers gather on their ``ice_host_addresses`` and the device SDK
  on its ``host_addresses``, each for its own connections (``relay.media.compat.ice``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from relay.media.compat import ice as compat_ice
from relay.settings import Settings, load_settings
from relay.store.db import Database
from relay.web.app import create_app

# The newest installed PostgreSQL server (Debian: /usr/lib/postgresql/<major>/bin).
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name),
             default=Path("/usr/lib/postgresql/15/bin"))
LOOPBACK = ["127.0.0.1"]


@pytest.fixture(autouse=True, scope="session")
def loopback_test_devices() -> Iterator[None]:
    compat_ice.set_default_host_addresses(LOOPBACK)
    yield
    compat_ice.set_default_host_addresses(None)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_database(data_dir: Path) -> Path:
    """Make the SQLite database ``relay serve`` would make in ``data_dir`` (``relay admin`` never creates
    one); returns its path. For tests that run admin commands without starting a server first."""
    import asyncio

    settings = load_settings(environ={}, data_dir=str(data_dir))

    async def make() -> None:
        db = await Database.connect(settings.effective_database_url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(make())
    assert settings.sqlite_path is not None
    return settings.sqlite_path


def base_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": str(data_dir), "demo_mode": False, "ice_host_addresses": LOOPBACK,
                              "log_format": "text"}
    values.update(overrides)
    return load_settings(environ={}, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return base_settings(tmp_path / "data")


@pytest.fixture
async def make_app(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """``await make_app(**setting_overrides, db=None)`` -> a started TestClient (its server on 127.0.0.1)."""
    clients: list[TestClient] = []

    async def make(db: Database | None = None, **overrides: Any) -> TestClient:
        overrides.setdefault("data_dir", str(tmp_path / "data"))
        settings = base_settings(Path(overrides.pop("data_dir")), **overrides)
        client = TestClient(TestServer(create_app(settings, db=db), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def app_client(make_app: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await make_app()


# --- PostgreSQL ---------------------------------------------------------------


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL 15 cluster for this test session, on 127.0.0.1 and a free port; stopped at the end."""
    root = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    log_file = root / "postgres.log"
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                 "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    opts = f"-h 127.0.0.1 -p {port} -k {root} -F -c fsync=off -c full_page_writes=off -c max_connections=200"
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log_file),
                                 "-w", "-t", "60", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


async def create_pg_database(postgres_url: str) -> str:
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


async def drop_pg_database(postgres_url: str, url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database in the session's cluster, dropped after the test."""
    url = await create_pg_database(postgres_url)
    yield url
    await drop_pg_database(postgres_url, url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> AsyncIterator[Database]:
    """An open, migrated Database on SQLite (tmp file) and on PostgreSQL (fresh database)."""
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else await create_pg_database(postgres_url)
    database = await Database.connect(url)
    try:
        await database.migrate()
        yield database
    finally:
        await database.close()
        if request.param == "postgresql":
            await drop_pg_database(postgres_url, url)
