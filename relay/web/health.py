"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the node takes new calls).

``/readyz`` reports the node, whichever worker answers it: 503 ``not_ready`` while the node is
draining (SIGTERM) or full (no worker has room for a call), or when the database does not answer,
so a load balancer sends new calls elsewhere. With one worker the node is that worker.
"""

from __future__ import annotations

import logging

from aiohttp import web

from relay.web import keys
from relay.web.errors import ApiError
from relay.web.middleware import json_response

log = logging.getLogger("relay.web")


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def _node_refusal(app: web.Application) -> str:
    """Why the node takes no new call ("" when it does)."""
    worker = app.get(keys.WORKER)
    if worker is not None:
        return worker.node.ready()[1]
    from relay.web.realtime import MEDIA

    plane = app.get(MEDIA)
    if plane is None:
        return ""
    if plane.registry.draining:
        return "draining"
    return "full" if plane.registry.load >= plane.registry.max_calls else ""


async def readyz(request: web.Request) -> web.Response:
    refusal = _node_refusal(request.app)
    if refusal:
        raise ApiError(503, f"This node takes no new calls ({refusal})", "not_ready", headers={"Retry-After": "1"})
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
