"""Structured logging: JSON lines off-terminal, a request id per request, no secrets ever.

- ``configure_logging(settings)`` installs one handler on the ``relay`` logger tree
  (JSON when ``log_format`` is ``json``, or ``auto`` and stderr is not a terminal).
- ``REQUEST_ID`` / ``SESSION_ID`` are context variables; every record carries them.
- Named loggers per area: ``relay.access``, ``relay.session``, ``relay.media``,
  ``relay.upstream``, ``relay.store`` (and ``relay.auth``, ``relay.admin``, ...).
- ``redact(text)`` masks secret-bearing headers, bearer tokens, workspace keys and
  every secret setting's value; the handler's filter applies it to every record.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import logging
import re
import sys
from typing import Any, TextIO

import orjson

from relay.settings import Settings

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("relay_request_id", default=None)
SESSION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("relay_session_id", default=None)

SECRET_HEADERS = frozenset({"x-client-secret", "x-workspace-key", "authorization", "cookie", "proxy-authorization",
                            "api-key", "openai-api-key"})
_PATTERNS = [
    re.compile(r"(?i)\b(x-client-secret|x-workspace-key|authorization|api-key|credential|static-auth-secret)"
               r"(\"?\s*[:=]\s*\"?)(bearer\s+)?[^\s\",;}]+"),
    re.compile(r"(?i)\b(bearer)(\s+)()[A-Za-z0-9._~+/=-]{8,}"),
]
_WORKSPACE_KEY_RE = re.compile(r"rwk_[A-Za-z0-9_-]{8,}")
_API_TOKEN_RE = re.compile(r"\b(rtk_[0-9a-f]{16})\.[A-Za-z0-9_-]+")  # WebSocket edge tokens: keep the public id
_known_secrets: set[str] = set()

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


def register_secret(value: str) -> None:
    """Mask this exact value wherever it would appear in a log line (values under 6 chars are ignored)."""
    if value and len(value) >= 6:
        _known_secrets.add(value)


def register_settings_secrets(settings: Settings) -> None:
    for name, _env, _default, _doc, secret in Settings.field_specs():
        if secret:
            value = getattr(settings, name)
            for v in value if isinstance(value, list) else [value]:
                register_secret(str(v))


def redact(text: str) -> str:
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    for pat in _PATTERNS:
        text = pat.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}***", text)
    text = _API_TOKEN_RE.sub(r"\1.***", text)
    return _WORKSPACE_KEY_RE.sub("rwk_***", text)


def safe_headers(headers: Any) -> dict[str, str]:
    """Request/response headers with secret-bearing ones masked (for debug logging)."""
    return {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


class ContextFilter(logging.Filter):
    """Adds request_id/session_id and redacts the message and every extra."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "session_id", None) is None:
            record.session_id = SESSION_ID.get()
        msg = record.getMessage()
        record.msg = redact(msg)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and value is not None:
                doc[key] = value
        if record.exc_text:
            doc["exc"] = record.exc_text
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items()
                          if k not in _STD_ATTRS and v is not None and k != "exc_text")
        return f"{line} {extras}" if extras else line


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Install relay's handler on the ``relay`` logger (idempotent: replaces the previous one)."""
    stream = stream or sys.stderr
    fmt = settings.log_format
    use_json = fmt == "json" or (fmt == "auto" and not (hasattr(stream, "isatty") and stream.isatty()))
    register_settings_secrets(settings)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.set_name("relay")
    root = logging.getLogger("relay")
    for old in [h for h in root.handlers if h.get_name() == "relay"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    # aiohttp's own loggers go through the same handler (its access log is replaced by relay.access).
    for name in ("aiohttp.server", "aiohttp.web"):
        lg = logging.getLogger(name)
        for old in [h for h in lg.handlers if h.get_name() == "relay"]:
            lg.removeHandler(old)
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)
    return handler
