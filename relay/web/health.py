"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the database answers too)."""

from __future__ import annotations

import logging

from aiohttp import web

from relay.web import keys
from relay.web.errors import ApiError
from relay.web.middleware import json_response

log = logging.getLogger("relay.web")


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    db = request.app.get(keys.DB)
    if db is None:
        raise ApiError(503, "Database not open", "not_ready")
    try:
        await db.fetchone("SELECT 1 AS one")
    except Exception as exc:  # any driver error means not ready; logged, answered 503
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise ApiError(503, "Database unavailable", "not_ready") from None
    return json_response({"status": "ready", "database": db.dialect})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
