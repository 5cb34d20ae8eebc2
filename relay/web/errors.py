"""The two documented error shapes, and the exception handlers raise to produce them.

- Realtime API (seed 000) and admin API: ``{"error": {"message", "type", "code"}}``
- App REST API (seed 002):               ``{"detail": {"error", "code"}}``

Handlers raise ``ApiError`` / ``AppApiError``; the error middleware renders them, and
renders any unexpected exception as a 500 in the shape of the API the path belongs to.
"""

from __future__ import annotations

import orjson
from aiohttp import web

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
}


class ApiError(Exception):
    """An error answered as ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, message: str, code: str, *, type_: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type_ or _TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "code": self.code}}
        return web.Response(status=self.status, body=orjson.dumps(body),
                            content_type="application/json", headers=self.headers)


class AppApiError(Exception):
    """An error of the app REST API, answered as ``{"detail": {"error", "code"}}``."""

    def __init__(self, status: int, error: str, code: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.code = code
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = {"detail": {"error": self.error, "code": self.code}}
        return web.Response(status=self.status, body=orjson.dumps(body),
                            content_type="application/json", headers=self.headers)
