"""The aiohttp application: middlewares, shared services, and each area's routes.

Each area of the product lives in its own module exposing ``setup(app) -> None``,
which adds its routes and, if it needs them, startup/cleanup hooks and services
under its own ``web.AppKey``. ``AREAS`` is the one list of them.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from relay.auth import THROTTLE, AuthThrottle
from relay.settings import Settings
from relay.store.db import Database
from relay.web import keys, middleware

AREAS: list[str] = [
    # foundation (#2)
    "relay.web.health",
    "relay.web.sessions",
    "relay.web.admin",
    "relay.web.openapi",
    # media plane (#3)
    "relay.web.realtime",
    # app REST API (#6)
    "relay.app_api.routes",
    # console page (#5)
    "relay.web.console",
]


def create_app(settings: Settings, *, db: Database | None = None) -> web.Application:
    """The application. ``db``: an already-open Database to use (not closed by the app); else
    the app opens and migrates ``settings.effective_database_url`` at startup and closes it at cleanup."""
    app = web.Application(client_max_size=max(settings.max_json_body_bytes, settings.max_upload_bytes))
    app[keys.SETTINGS] = settings
    app[THROTTLE] = AuthThrottle(settings)
    middleware.setup(app)
    app.cleanup_ctx.append(_database_ctx(db))
    for name in AREAS:
        importlib.import_module(name).setup(app)
    return app


def _database_ctx(given: Database | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if given is not None:
            app[keys.DB] = given
            yield
            return
        db = await Database.connect(app[keys.SETTINGS].effective_database_url)
        try:
            await db.migrate()
            app[keys.DB] = db
            yield
        finally:
            await db.close()

    return ctx
