"""The aiohttp application: middlewares, shared services, and each area's routes.

Each area of the product lives in its own module exposing ``setup(app) -> None``,
which adds its routes and, if it needs them, startup/cleanup hooks and services
under its own ``web.AppKey``. ``AREAS`` is the one list of them.
"""

from __future__ import annotations

import importlib

from aiohttp import web

from relay.settings import Settings
from relay.web import keys

AREAS: list[str] = [
    # foundation (#2)
    # "relay.web.sessions", "relay.web.admin", "relay.web.openapi",
    # media plane (#3)
    "relay.web.realtime",
    # app REST API (#6): "relay.app_api.routes",
    # console page (#5)
    "relay.web.console",
]


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=max(settings.max_json_body_bytes, settings.max_upload_bytes))
    app[keys.SETTINGS] = settings
    for name in AREAS:
        importlib.import_module(name).setup(app)
    return app
