"""Shared pieces of the app API handlers: the services key, authentication, analytics, validation, and the
mapping of the operations' domain error (``relay.app_api.errors.AppError``) to the app API's error shape."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from relay.app_api.errors import AppError
from relay.app_api.services import AppServices
from relay.models import Device
from relay.store import app_requests
from relay.store import app_voices as voices_repo
from relay.store.app_voices import VoiceRow
from relay.store.db import Database
from relay.web import keys
from relay.web.authn import authenticate_app
from relay.web.errors import ApiError, AppApiError
from relay.web.middleware import read_json

log = logging.getLogger("relay.app_api")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEVICE = web.RequestKey("app_device", Device)
#: the app API's services (started and closed by ``relay.web.app_api.routes.services_ctx``)
SERVICES = web.AppKey("app_services", AppServices)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def db_of(request: web.Request) -> Database:
    return request.app[keys.DB]


async def device_of(request: web.Request) -> Device:
    """Authenticate (X-Workspace-Key + X-Client-Id + X-Client-Secret) and remember the device for analytics."""
    device = await authenticate_app(request)
    if device.workspace_id is None:  # demo devices have no workspace: nothing of the app API is theirs
        raise AppApiError(403, "The app API needs a workspace device (demo mode is not accepted)", "WORKSPACE_REQUIRED")
    request[DEVICE] = device
    return device


def recorded(endpoint: str) -> Callable[[Handler], Handler]:
    """Record every authenticated call (workspace, client, X-App-Source, endpoint, status) in ``app_requests``;
    an ``AppError`` of the operations becomes ``AppApiError`` (same status, message, code and headers)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except (AppApiError, ApiError) as exc:
                status = exc.status
                raise
            except AppError as exc:
                status = exc.status
                raise AppApiError(exc.status, exc.message, exc.code, headers=exc.headers) from None
            finally:
                device: Device | None = request.get(DEVICE)
                if device is not None:
                    try:
                        await app_requests.record(db_of(request), workspace_id=device.workspace_id,
                                                  client_id=device.client_id,
                                                  app_source=request.headers.get("X-App-Source"),
                                                  endpoint=endpoint, status=status)
                    except Exception as exc:  # analytics never fail a request (logged, not swallowed)
                        log.warning("could not record app request: %s", type(exc).__name__)

        return inner

    return wrap


def check_voice_id(raw: str) -> str:
    if not UUID_RE.match(raw or ""):
        raise AppApiError(400, "voice_id must be a UUID", "INVALID_VOICE_ID")
    return raw.lower()


async def visible_voice(request: web.Request, device: Device, raw_id: str) -> VoiceRow:
    """The voice, if it is in the device's workspace (else 404) and visible to the device (else 403)."""
    voice_id = check_voice_id(raw_id)
    assert device.workspace_id is not None
    voice = await voices_repo.find_in_workspace(db_of(request), device.workspace_id, voice_id)
    if voice is None:
        raise AppApiError(404, "Voice not found in this workspace", "VOICE_NOT_FOUND")
    if not voice.visible_to(device.client_id):
        raise AppApiError(403, "This voice is not available to this device", "VOICE_NOT_AVAILABLE")
    return voice


async def json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The JSON object body; with ``optional``, an absent body is ``{}``."""
    if optional and not request.can_read_body:
        return {}
    if optional and request.content_type != "application/json" and request.content_length in (None, 0):
        return {}
    doc = await read_json(request)
    if not isinstance(doc, dict):
        raise AppApiError(400, "Request body must be a JSON object", "INVALID_JSON")
    return doc


def opt_str(doc: dict[str, Any], name: str, max_chars: int, code: str = "INVALID_FIELD") -> str:
    value = doc.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AppApiError(400, f"{name} must be a string", code)
    if len(value) > max_chars:
        raise AppApiError(400, f"{name} must be at most {max_chars} characters", code)
    return value.strip()


def number(doc: dict[str, Any], name: str, default: float, lo: float, hi: float, code: str) -> float:
    value = doc.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
        raise AppApiError(400, f"{name} must be a number from {lo} to {hi}", code)
    return float(value)


def base_url(request: web.Request) -> str:
    configured = request.app[keys.SETTINGS].public_base_url
    return configured.rstrip("/") if configured else str(request.url.origin())
