"""The ``relay`` command: ``serve``, ``config --markdown``, ``admin ...``.

    relay serve [--config relay.toml]
    relay config --markdown            # the README's settings table
    relay admin [--config FILE] [--json] workspaces|assistants|clients ...
    relay assistant [--host H] [--port N]   # the built-in local assistant alone (#3)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from relay.settings import Settings, SettingsError, load_settings, markdown_table

if TYPE_CHECKING:
    from aiohttp import web

    from relay.console_link import LinkKey

log = logging.getLogger("relay.server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="WebRTC <-> Realtime media relay for voice assistants")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML settings file (RELAY_* environment variables override it)")
    config = sub.add_parser("config", help="show settings")
    config.add_argument("--config", help="TOML settings file")
    config.add_argument("--markdown", action="store_true", help="print the settings table (README)")
    from relay.admin.cli import add_admin_parser

    add_admin_parser(sub)
    sub.add_parser("assistant", help="run the built-in local Realtime assistant alone (see relay assistant -h)")
    return parser


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the server until SIGTERM/SIGINT (or ``stop`` is set), then drain gracefully."""
    from aiohttp import web

    from relay.web.app import create_app
    from relay.web.server import ConnectionLimits, RelayAppRunner

    app = create_app(settings)
    runner = RelayAppRunner(
        app, access_log=None, shutdown_timeout=settings.shutdown_timeout_s, limits=ConnectionLimits.from_settings(settings),
        max_line_size=settings.max_header_bytes, max_field_size=settings.max_header_bytes,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        link = await _prepare_console_link(app, settings) if settings.console_link else None
        await site.start()
        bound = runner.addresses[0] if runner.addresses else (settings.host, settings.port)
        log.info("relay listening on http://%s:%s", bound[0], bound[1], extra={"event": "listening"})
        if link is not None:
            _print_console_link(settings, link, bound[0], bound[1])
        await stop.wait()
        log.info("shutting down (drain up to %.0f s)", settings.shutdown_timeout_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("stopped")


async def _prepare_console_link(app: web.Application, settings: Settings) -> LinkKey | None:
    """The default workspace's key for the console link (relay.console_link); None on failure."""
    from relay.console_link import prepare
    from relay.store.db import DatabaseError
    from relay.web import keys

    try:
        return await prepare(app[keys.DB], settings.data_path)
    except (OSError, DatabaseError) as exc:
        log.error("console link: could not prepare the default workspace's key: %s", exc)
        return None


def _print_console_link(settings: Settings, link: LinkKey, host: str, port: int) -> None:
    """One line on stdout (never through logging: it carries the workspace key)."""
    from relay.console_link import base_url, console_url

    if link.note:
        log.warning("console link: %s", link.note)
    if link.key is None:
        return
    url = console_url(base_url(settings.public_base_url, host, port), link.key)
    try:
        print(f"Console: {url}", flush=True)
    except OSError as exc:  # stdout closed or a broken pipe: the server still runs
        log.warning("console link: could not write to stdout: %s", exc)


def _run_serve(args: argparse.Namespace) -> int:
    from relay.log import configure_logging

    settings = load_settings(args.config)
    configure_logging(settings)
    log.info("starting relay", extra={"settings": settings.redacted()})
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # uvloop is a dependency; only odd platforms lack it
        runner = asyncio.run
    runner(serve(settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["assistant"]:  # the local assistant parses its own arguments
        from relay.assistant.server import main as assistant_main

        return assistant_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _run_serve(args)
        if args.command == "config":
            if args.markdown:
                print(markdown_table())
            else:
                import orjson

                print(orjson.dumps(load_settings(args.config).redacted(), option=orjson.OPT_INDENT_2).decode())
            return 0
        if args.command == "admin":
            from relay.admin.cli import run_admin

            return run_admin(args)
    except SettingsError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    return 2
