"""Typed errors of the device SDK.

Every HTTP error of the Realtime API arrives as seed 000's JSON shape
``{"error": {"message", "type", "code"}}``; :class:`RelayError` carries it.
"""

from __future__ import annotations

from typing import Any

import orjson


class RelayError(Exception):
    """An HTTP call to relay failed; ``status`` and the seed-000 error fields are kept."""

    def __init__(self, status: int, message: str, type_: str, code: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.body = body

    @property
    def error(self) -> dict[str, Any]:
        """The ``error`` object as the server sent it (or as reconstructed)."""
        return {"message": self.message, "type": self.type, "code": self.code}


class ConnectError(Exception):
    """The WebRTC connection did not come up (ICE/DTLS failed or timed out)."""


def parse_error(status: int, body: bytes, content_type: str = "") -> RelayError:
    """Build a :class:`RelayError` from a failed response, tolerating non-JSON bodies."""
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return RelayError(
            status,
            str(err.get("message", "")),
            str(err.get("type", "")),
            str(err.get("code", "")),
            body=doc,
        )
    text = body[:200].decode("utf-8", "replace") if body else ""
    return RelayError(status, text or f"HTTP {status}", "http_error", f"http_{status}", body=doc)
