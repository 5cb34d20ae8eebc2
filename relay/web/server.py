"""The HTTP server runner of ``relay serve``: aiohttp's, with protocol errors answered in JSON.

Requests aiohttp rejects before any handler runs (a request line or header longer
than ``max_header_bytes``, a malformed request) would get a text/plain body;
here they get the documented ``{"error": {...}}`` shape (or ``{"detail": ...}``
under ``/v1/app``), and are logged as client errors without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from relay.web.middleware import error_response

log = logging.getLogger("relay.access")


class JsonErrorRequestHandler(RequestHandler):
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
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class RelayAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use ``JsonErrorRequestHandler``."""

    async def _make_server(self) -> Server:
        base = await super()._make_server()
        kwargs: dict[str, Any] = dict(self._kwargs)
        return RelayServer(base.request_handler, request_factory=base.request_factory,
                           loop=asyncio.get_running_loop(), **kwargs)
