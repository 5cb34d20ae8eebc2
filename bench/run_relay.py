"""Minimal relay launcher for the bench (``python -m bench.run_relay``), used only while
``relay serve`` is unavailable: settings from ``RELAY_*``, ``create_app``, uvloop, one worker."""

from __future__ import annotations

import logging

from aiohttp import web

from relay.settings import load_settings
from relay.web.app import create_app


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout_s,
    )


if __name__ == "__main__":
    main()
