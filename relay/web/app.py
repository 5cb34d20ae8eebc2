"""The aiohttp application: middlewares, shared services, and each area's routes.

Each area of the product lives in its own module exposing ``setup(app) -> None``,
which adds its routes and, if it needs them, startup/cleanup hooks and services
under its own ``web.AppKey``. ``AREAS`` is the one list of them (modules, imported here: no import by name).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import ModuleType

from aiohttp import web

from relay.auth import AuthThrottle
from relay.media import compat
from relay.settings import Settings
from relay.store.db import Database
from relay.web import admin, console, health, keys, metrics, middleware, openapi, realtime, sessions, ws_edge
from relay.web.app_api import routes as app_routes
from relay.web.authn import THROTTLE

log = logging.getLogger("relay.store")

AREAS: list[ModuleType] = [
    # foundation (#2)
    health,
    sessions,
    admin,
    openapi,
    # media plane (#3)
    realtime,
    # WebSocket edge for server clients (seed 003); after relay.web.realtime (uses its media plane)
    ws_edge,
    # app REST API (#6)
    app_routes,
    # console page (#5)
    console,
    # operations: GET /metrics (Prometheus)
    metrics,
]


def create_app(settings: Settings, *, db: Database | None = None, worker: object | None = None) -> web.Application:
    """The application. ``db``: an already-open Database to use (not closed by the app); else
    the app opens and migrates ``settings.effective_database_url`` at startup and closes it at cleanup.
    ``worker``: this worker's ``relay.node.state.WorkerSlot`` under ``relay serve --workers N``.
    ``relay.media.compat.CompatError`` when the installed aiortc/aioice lack a name relay relies on."""
    compat.install()  # once per process: check the table, put the one process-wide hook in
    app = web.Application(client_max_size=max(settings.max_json_body_bytes, settings.max_upload_bytes))
    app[keys.SETTINGS] = settings
    if worker is not None:
        app[keys.WORKER] = worker
    app[THROTTLE] = AuthThrottle(settings)
    middleware.setup(app)
    app.cleanup_ctx.append(_database_ctx(db))
    app[keys.AREAS] = AREAS
    for area in AREAS:
        area.setup(app)
    return app


def _database_ctx(given: Database | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if given is not None:
            app[keys.DB] = given
            yield
            return
        settings = app[keys.SETTINGS]
        db = await Database.connect(settings.effective_database_url)
        purger: asyncio.Task[None] | None = None
        try:
            await db.migrate()
            app[keys.DB] = db
            purger = asyncio.create_task(_purge_sessions(db, settings.session_retention_s), name="relay-session-purge")
            yield
        finally:
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            await db.close()

    return ctx


async def _purge_sessions(db: Database, retention_s: int, every_s: float = 3600.0) -> None:
    """Delete session records expired more than ``retention_s`` ago, hourly (owned by the db context)."""
    from relay.store.sessions import purge_expired

    while True:
        try:
            removed = await purge_expired(db, now=time.time(), keep_s=retention_s)
            if removed:
                log.info("purged %d expired session records", removed)
        except Exception:  # a failed purge is retried next hour; it must not stop the server
            log.exception("session purge failed")
        await asyncio.sleep(every_s)
