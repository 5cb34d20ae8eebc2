"""``POST /v1/realtime/sessions`` (the Realtime device API): authenticate, record a session, hand out ICE servers."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from relay.store import sessions as sessions_repo
from relay.turn import ice_servers
from relay.web import keys
from relay.web.authn import authenticate
from relay.web.errors import ApiError
from relay.web.middleware import json_response, read_json

log = logging.getLogger("relay.session")

MODALITIES = ("text", "audio")


def server_timing(**spans_s: float) -> str:
    """A ``Server-Timing`` value (``auth;dur=0.12, db;dur=0.95``, ms) for the set-up responses (docs/ops.md)."""
    return ", ".join(f"{name};dur={s * 1000:.2f}" for name, s in spans_s.items())


def applied_assistant(assistant: Any) -> dict[str, Any]:
    """What relay will apply to this device's calls, for the device to show (the console's session panel).

    A relay extension of the session answer (devices that do not know it ignore it): the
    assistant's id and name, model, voice, turn detection and the *names* of its tools with
    their side. Never the instructions, the tools' descriptions or schemas, the upstream or its key.
    """
    return {"id": assistant.id, "name": assistant.name, "model": assistant.model, "voice": assistant.voice,
            "turn_detection": assistant.turn_detection,
            "tools": [{"name": t.name, "side": t.side} for t in assistant.all_tools]}


def _modalities(body: object) -> list[str]:
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object", "invalid_request")
    modalities = body.get("modalities", ["text", "audio"])
    if (not isinstance(modalities, list) or not modalities or len(modalities) > len(MODALITIES)
            or not all(isinstance(m, str) and m in MODALITIES for m in modalities)
            or len(set(modalities)) != len(modalities)):
        raise ApiError(400, 'modalities must be a non-empty list of "text" and/or "audio"', "invalid_modalities")
    return modalities


async def create_session(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    if request.content_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json", "unsupported_media_type")
    t0 = time.perf_counter()
    device = await authenticate(request)
    t1 = time.perf_counter()
    modalities = _modalities(await read_json(request))
    now = time.time()
    servers = ice_servers(settings, device.client_id, now=now)
    t2 = time.perf_counter()
    record = await sessions_repo.create(
        request.app[keys.DB], client_id=device.client_id, workspace_id=device.workspace_id,
        assistant_id=device.assistant.id, demo=device.demo, modalities=modalities, ice_servers=servers, now=now,
        ttl_s=settings.turn_ttl_s)
    log.info("session created", extra={"session_id": record.id, "client_id": device.client_id, "demo": device.demo})
    resp = json_response({"id": record.id, "iceServers": servers, "expires_at": int(record.expires_at),
                          "assistant": applied_assistant(device.assistant)})
    resp.headers["Server-Timing"] = server_timing(auth=t1 - t0, db=time.perf_counter() - t2)
    return resp


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/realtime/sessions", create_session)
