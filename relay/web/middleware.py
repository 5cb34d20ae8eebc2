"""HTTP edges shared by every area: request id + access log, CORS, error rendering, size limits.

- Every response carries ``X-Request-Id`` (the caller's, if it is a sane token, else a new one).
- CORS: preflights are answered for any path; every response carries the allow-origin
  headers; exposed: ``X-Request-Id``, ``Retry-After`` (and ``X-Session-Id``, ``Location``).
- Errors: ``ApiError``/``AppApiError`` are rendered; aiohttp's HTTP exceptions (404/405/413...)
  and unexpected exceptions too, in the shape of the path's API (``/v1/app/...`` ->
  ``{"detail": {...}}``, everything else ``{"error": {...}}``). Never a bare 500.
- Limits: a declared ``Content-Length`` over the limit of its content type is refused with
  413 ``request_too_large`` before the body is read; ``read_json`` bounds chunked bodies too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from relay.log import REQUEST_ID
from relay.ops.counters import counters_of
from relay.settings import Settings
from relay.web import keys
from relay.web.errors import ApiError, AppApiError

access_log = logging.getLogger("relay.access")
log = logging.getLogger("relay.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALLOW_HEADERS = ("X-Client-Id", "X-Client-Secret", "X-Demo-Mode", "X-Assistant-Id", "X-Workspace-Key",
                 "X-App-Source", "Content-Type", "Authorization", "X-Request-Id")
EXPOSE_HEADERS = ("X-Request-Id", "Retry-After", "X-Session-Id", "Location")
ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: access log / relay_http_requests_total status of a request whose client went away mid-handler (nginx's 499)
CLIENT_CLOSED_REQUEST = 499
REQUEST_ID_KEY = web.RequestKey("request_id", str)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "request_too_large",
          415: "unsupported_media_type", 429: "rate_limited", 500: "internal_error", 503: "unavailable"}
_MESSAGES = {404: "Not found", 405: "Method not allowed", 413: "Request body too large",
             500: "Internal server error"}


def is_app_api(path: str) -> bool:
    return path == "/v1/app" or path.startswith("/v1/app/")


def error_response(path: str, status: int, message: str, code: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    """An error in the shape of the API ``path`` belongs to."""
    if is_app_api(path):
        return AppApiError(status, message, code.upper(), headers=headers).response()
    return ApiError(status, message, code, headers=headers).response()


def remote_address(request: web.Request) -> str:
    """The caller's address: the TCP peer, or with ``trust_forwarded_for`` the last X-Forwarded-For hop
    (the one your own proxy appended; earlier hops are client-controlled)."""
    settings: Settings = request.app[keys.SETTINGS]
    if request.app.get(keys.WORKER) is not None:  # handed over by a sibling worker (relay.node.handoff)
        from relay.node.handoff import REMOTE_HEADER, arrived_from_sibling

        if arrived_from_sibling(request) and request.headers.get(REMOTE_HEADER):
            return request.headers[REMOTE_HEADER][:64]
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last and len(last) <= 64:
            return last
    return request.remote or "unknown"


def _limit_for(settings: Settings, content_type: str) -> int:
    if content_type == "application/sdp":
        return settings.max_sdp_bytes
    if content_type.startswith("multipart/"):
        return settings.max_upload_bytes
    return settings.max_json_body_bytes


async def read_json(request: web.Request, *, max_bytes: int | None = None) -> Any:
    """The request's JSON body: 415 unless ``application/json``, 413 over the limit, 400 if not JSON."""
    settings = request.app[keys.SETTINGS]
    limit = max_bytes or settings.max_json_body_bytes
    if request.content_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json", "unsupported_media_type")
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"Request body larger than {limit} bytes", "request_too_large")
    if not body:
        raise ApiError(400, "Request body must be a JSON document", "invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Request body is not valid JSON", "invalid_json") from None


def _origin_allowed(settings: Settings, origin: str) -> str | None:
    if "*" in settings.cors_origins:
        return "*"
    return origin if origin in settings.cors_origins else None


def _preflight(request: web.Request, settings: Settings) -> web.Response:
    origin = request.headers.get("Origin", "")
    allowed = _origin_allowed(settings, origin)
    if allowed is None:
        return error_response(request.path, 403, "Origin not allowed", "cors_origin_not_allowed")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": allowed,
        "Access-Control-Allow-Methods": ", ".join(ALLOW_METHODS),
        "Access-Control-Allow-Headers": ", ".join(ALLOW_HEADERS),
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    })


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, CORS preflight, size limits, error rendering and the access log, in one pass."""
    settings: Settings = request.app[keys.SETTINGS]
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = request_id
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await _handle(request, handler, settings)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED_REQUEST  # the connection was lost (aiohttp's handler_cancellation): no server error
        raise
    finally:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        access_log.info("%s %s %s", request.method, request.path, status,
                        extra={"method": request.method, "path": request.path, "status": status,
                               "duration_ms": duration_ms, "remote": remote_address(request)})
        counters = counters_of(request.app)
        if counters is not None:  # GET /metrics: relay_http_requests_total{method,route,status}
            counters.http_request(request, status)
        REQUEST_ID.reset(token)


async def _handle(request: web.Request, handler: Handler, settings: Settings) -> web.StreamResponse:
    path = request.path
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(request, settings)
    declared = request.content_length
    if declared is not None:
        limit = _limit_for(settings, request.content_type)
        if declared > limit:
            return error_response(path, 413, f"Request body larger than {limit} bytes", "request_too_large")
    try:
        return await handler(request)
    except (ApiError, AppApiError) as exc:
        if is_app_api(path) and isinstance(exc, ApiError):
            return AppApiError(exc.status, exc.message, exc.code.upper(), headers=exc.headers).response()
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _MESSAGES.get(exc.status) or exc.reason
        code = _CODES.get(exc.status, "http_error")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(path, exc.status, message, code, headers)
    except (ConnectionResetError, TimeoutError) as exc:
        # The peer went away or a read timed out: nothing useful to answer.
        log.info("request ended early: %s", type(exc).__name__)
        return error_response(path, 400, "Request aborted", "request_aborted")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, path)
        return error_response(path, 500, "Internal server error", "internal_error")


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response gets, including streamed and WebSocket ones."""
    rid = request.get(REQUEST_ID_KEY)
    if rid:
        response.headers.setdefault("X-Request-Id", rid)
    settings: Settings = request.app[keys.SETTINGS]
    origin = request.headers.get("Origin")
    if origin:
        allowed = _origin_allowed(settings, origin)
        if allowed is not None:
            response.headers.setdefault("Access-Control-Allow-Origin", allowed)
            response.headers.setdefault("Access-Control-Expose-Headers", ", ".join(EXPOSE_HEADERS))
            if allowed != "*":
                response.headers.setdefault("Vary", "Origin")


def setup(app: web.Application) -> None:
    app.middlewares.append(edge_middleware)
    app.on_response_prepare.append(on_response_prepare)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json", headers=headers)
