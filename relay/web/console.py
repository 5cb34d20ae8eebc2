"""The browser console page: ``GET /`` and its files under ``/static/``.

The page (``relay/static/``) is plain HTML, CSS and ES modules shipped inside the package:
no build step, nothing fetched from the internet. It runs seed 001's browser flow against this
relay, or against another one (its API base URL is a setting on the page, reached via CORS).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from aiohttp import web

log = logging.getLogger("relay.console")

# The page talks to any relay the user names (connect-src), plays a MediaStream (media-src), and
# loads nothing but its own files.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' http: https:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ]
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    # The page asks for the microphone; nothing else.
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
}


def static_dir() -> Path:
    """The directory holding the page's files, inside the installed package."""
    path = Path(str(resources.files("relay").joinpath("static")))
    if not (path / "index.html").is_file():
        raise RuntimeError(f"relay's console page is missing from the package: {path}/index.html")
    return path


async def _add_page_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/" or request.path.startswith("/static/"):
        for name, value in PAGE_HEADERS.items():
            response.headers.setdefault(name, value)


def setup(app: web.Application) -> None:
    root = static_dir()
    index = root / "index.html"

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Content-Type": "text/html; charset=utf-8"})

    app.router.add_get("/", page, name="console")
    app.router.add_static("/static/", root, name="console-static", follow_symlinks=False, append_version=False)
    app.on_response_prepare.append(_add_page_headers)
    log.debug("console page served from %s", root)
