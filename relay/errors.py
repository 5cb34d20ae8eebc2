"""The base of relay's domain errors: what a domain module (no HTTP) says when it refuses or fails.

``status`` is the HTTP-like status the web layer answers with, ``code`` the API's error code, ``headers``
what to answer with besides (``Retry-After``, ``WWW-Authenticate``). Subclasses: ``relay.auth.AuthError``,
``relay.app_api.errors.AppError``, ``relay.app_api.admin.AdminError``; ``relay.web`` renders each in the shape of its
API.
"""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, status: int, message: str, code: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
