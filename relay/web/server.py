"""The HTTP server runner of ``relay serve``: aiohttp's, with protocol errors answered in JSON
and limits on what a connection may hold without sending a request.

Requests aiohttp rejects before any handler runs (a request line or header longer
than ``max_header_bytes``, a malformed request) would get a text/plain body;
here they get the documented ``{"error": {...}}`` shape (or ``{"detail": ...}``
under ``/v1/app``), and are logged as client errors without a traceback.

aiohttp waits for a request's line and headers, and for a body, as long as the
client likes (a slow or silent connection holds an fd for ever). ``ConnectionLimits``:

- ``header_timeout_s``: a connection must deliver a whole request line + headers
  within this of opening, or of the first byte of its next request;
- ``body_timeout_s``: a request body that makes no progress for this long (while
  relay is reading it) is abandoned, the connection closed;
- ``keepalive_timeout_s``: idle connections between requests (aiohttp's own timer);
- ``pending_per_address``: connections of one address that have not delivered a
  whole request yet; past it a new connection is closed at once. A connection
  leaves the count once a request arrived whole (a WebSocket after its upgrade, a
  keep-alive connection between requests), so long calls and bench's hundreds of
  devices from one address are not what it limits.

What is shed is logged (``relay.access``) and counted in
``relay_http_connections_shed_total{reason}``. Every timer is one loop handle per
connection, re-armed lazily (no per-byte work beyond storing the time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from relay.ops.counters import counters_of
from relay.web.middleware import error_response

log = logging.getLogger("relay.access")

# name -> why; every private aiohttp name JsonErrorRequestHandler reads (aiohttp 3.14), checked by check_supported
_PRIVATE = {
    "RequestHandler._messages": "the request just parsed by data_received (its payload: is the body complete?)",
    "RequestHandler._request_count": "did data_received complete a request line + headers?",
    "BaseProtocol._upgraded": "a WebSocket after its upgrade: its own heartbeat watches it",
    "RequestHandler._payload_parser": "set for an upgraded connection's WebSocket reader",
    "RequestHandler._force_close": "the connection is already closing",
    "BaseProtocol._reading_paused": "relay stopped reading a body (flow control): not the client's stall",
}


def check_supported() -> None:
    """``RuntimeError`` if the installed aiohttp lacks a name ``ConnectionLimits`` relies on."""
    from aiohttp.base_protocol import BaseProtocol

    slots = {"RequestHandler": set(RequestHandler.__slots__), "BaseProtocol": set(BaseProtocol.__slots__)}
    for name, why in _PRIVATE.items():
        owner, attr = name.split(".")
        if attr not in slots[owner]:
            raise RuntimeError(f"unsupported aiohttp version: no {name} ({why})")


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 30.0
    pending_per_address: int = 1000

    @classmethod
    def from_settings(cls, settings: Any) -> ConnectionLimits:
        return cls(header_timeout_s=settings.http_header_timeout_s, body_timeout_s=settings.http_body_timeout_s,
                   keepalive_timeout_s=settings.http_keepalive_timeout_s,
                   pending_per_address=settings.http_pending_per_address_max)


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's handler + JSON protocol errors + ``ConnectionLimits`` (see the module doc)."""

    def __init__(self, manager: Any, *, limits: ConnectionLimits | None = None,
                 pending: dict[str, int] | None = None, on_shed: Callable[[str], None] = lambda reason: None,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._pending = pending if pending is not None else {}
        self._on_shed = on_shed
        self._address = ""
        self._is_pending = False  # counted in _pending[address]: no whole request delivered yet
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._head_deadline: float | None = None  # request line + headers due by then
        self._body: Any = None  # the payload of the request being received, while incomplete
        self._last_data = 0.0

    # -- connection lifecycle -----------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._limits
        if limits is None:
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        self._address = peer[0] if isinstance(peer, tuple) and peer else "-"
        if self._pending.get(self._address, 0) >= limits.pending_per_address:
            self._shed("pending_per_address", transport)
            transport.close()
            return
        self._pending[self._address] = self._pending.get(self._address, 0) + 1
        self._is_pending = True
        super().connection_made(transport)
        self._head_deadline = self._loop.time() + limits.header_timeout_s
        self._arm(self._head_deadline)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._not_pending()
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None
        super().connection_lost(exc)

    def _not_pending(self) -> None:
        if self._is_pending:
            self._is_pending = False
            left = self._pending.get(self._address, 1) - 1
            if left > 0:
                self._pending[self._address] = left
            else:
                self._pending.pop(self._address, None)

    # -- progress --------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        limits = self._limits
        if limits is None or self._upgraded or self._payload_parser is not None:
            super().data_received(data)
            return
        now = self._loop.time()
        self._last_data = now
        if self._head_deadline is None and self._body is None and data:
            self._head_deadline = now + limits.header_timeout_s  # the first byte of a next request
            self._arm(self._head_deadline)
        count = self._request_count
        super().data_received(data)
        if self._request_count != count and self._messages:
            self._head_deadline = None  # a request line + headers arrived whole
            payload = self._messages[-1][1]
            self._body = None if payload.is_eof() else payload
            if self._body is not None:
                self._arm(now + limits.body_timeout_s)
        if self._body is not None and self._body.is_eof():
            self._body = None
        if self._head_deadline is None and self._body is None:
            self._not_pending()  # a whole request arrived
            if self._deadline_handle is not None:  # nothing to watch until the next request's first byte
                self._deadline_handle.cancel()
                self._deadline_handle = None

    def _arm(self, when: float) -> None:
        if self._deadline_handle is None:
            self._deadline_handle = self._loop.call_at(when, self._check_deadlines)
        elif self._deadline_handle.when() > when:
            self._deadline_handle.cancel()
            self._deadline_handle = self._loop.call_at(when, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self._deadline_handle = None
        limits = self._limits
        if limits is None or self.transport is None or self._force_close:
            return
        now = self._loop.time()
        if self._upgraded or self._payload_parser is not None:
            return  # a WebSocket: its own heartbeat watches it
        if self._head_deadline is not None:
            if now >= self._head_deadline:
                self._shed("header_timeout", self.transport)
                self._abandon()
                return
            self._arm(self._head_deadline)
        body = self._body
        if body is not None and not body.is_eof():
            if self._reading_paused:
                self._last_data = now  # relay is not reading it (flow control): not the client's stall
            due = self._last_data + limits.body_timeout_s
            if now >= due:
                self._shed("body_timeout", self.transport)
                self._abandon()
                return
            self._arm(due)

    def _abandon(self) -> None:
        self.force_close()
        if self.transport is not None:
            self.transport.close()

    def _shed(self, reason: str, transport: asyncio.BaseTransport) -> None:
        self._on_shed(reason)
        log.warning("closed a connection from %s: %s", self._address or "-", reason.replace("_", " "),
                    extra={"event": "http_connection_shed", "reason": reason})

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, http_exceptions.LineTooLong):
            text, code = "Request line or header too large", "header_too_large"
        else:
            text, code = "Malformed HTTP request", "bad_request"
        path = request.path if isinstance(getattr(request, "path", None), str) else "/"
        log.info("rejected malformed request from %s: %s", request.remote, type(exc).__name__ if exc else status,
                 extra={"status": status})
        resp = error_response(path, status, text, code)
        resp.force_close()
        return resp


class RelayServer(Server):
    def __init__(self, *args: Any, limits: ConnectionLimits | None = None,
                 on_shed: Callable[[str], None] = lambda reason: None, **kwargs: Any) -> None:
        if limits is not None:
            kwargs["keepalive_timeout"] = limits.keepalive_timeout_s
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._on_shed = on_shed
        self.pending_by_address: dict[str, int] = {}

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, limits=self._limits, pending=self.pending_by_address,
                                       on_shed=self._on_shed, **self._kwargs)


class RelayAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use ``JsonErrorRequestHandler`` (with ``limits``, if given)."""

    def __init__(self, app: web.Application, *, limits: ConnectionLimits | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        if limits is not None:
            check_supported()
        self._limits = limits

    async def _make_server(self) -> Server:
        base = await super()._make_server()
        kwargs: dict[str, Any] = dict(self._kwargs)
        counters = counters_of(self.app)
        on_shed = counters.http_connection_shed if counters is not None else (lambda reason: None)
        return RelayServer(base.request_handler, request_factory=base.request_factory,
                           loop=asyncio.get_running_loop(), limits=self._limits, on_shed=on_shed, **kwargs)
