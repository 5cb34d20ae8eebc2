"""The ``relay`` command: ``serve``, ``config --markdown``, ``admin ...``.

    relay serve [--config relay.toml] [--host H] [--port N] [--data-dir DIR] [--workers N|auto]
    relay config --markdown            # the README's settings table
    relay admin [--config FILE] [--json] workspaces|assistants|clients ...
    relay assistant [--host H] [--port N]   # the built-in local assistant alone
    relay call [URL] --client-id ID --secret S --text hello   # a terminal device (relay.client.call)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from relay.settings import Settings, SettingsError, load_settings, markdown_table, worker_count
from relay.startup import StartupError, event_loop_runner

if TYPE_CHECKING:
    from aiohttp import web

    from relay.console_link import LinkKey
    from relay.node.state import WorkerSlot

log = logging.getLogger("relay.server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="WebRTC <-> Realtime media relay for voice assistants")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML settings file (RELAY_* environment variables override it)")
    serve.add_argument("--host", help="address to bind (the host setting; overrides RELAY_HOST and --config)")
    serve.add_argument("--port", type=int, help="TCP port (the port setting; 0: any free port)")
    serve.add_argument("--data-dir", help="data directory (the data_dir setting; default $XDG_DATA_HOME/relay)")
    serve.add_argument("--workers", help="worker processes sharing the port (the workers setting): a number, "
                       "or auto for one per core; default 1")
    config = sub.add_parser("config", help="show settings")
    config.add_argument("--config", help="TOML settings file")
    config.add_argument("--markdown", action="store_true", help="print the settings table (README)")
    from relay.admin.cli import add_admin_parser

    add_admin_parser(sub)
    sub.add_parser("assistant", help="run the built-in local Realtime assistant alone (see relay assistant -h)")
    from relay.client.call import add_call_parser

    add_call_parser(sub)
    return parser


async def serve(settings: Settings, *, stop: asyncio.Event | None = None,
                origins: dict[str, str] | None = None, sock: socket.socket | None = None,
                worker: WorkerSlot | None = None) -> None:
    """Run the server until SIGTERM/SIGINT (or ``stop`` is set), then drain gracefully.

    ``StartupError`` (one line) when the database cannot be opened or the port cannot be bound;
    ``origins`` (setting -> which source chose it) makes those lines name the setting to change.
    Under ``--workers N`` (relay.node.supervisor): ``sock`` is the node's listening socket and
    ``worker`` this worker's slot; the worker also listens on its private Unix socket (hand-off).
    """
    from aiohttp import web

    from relay.store.db import DatabaseError
    from relay.web.app import create_app
    from relay.web.server import ConnectionLimits, RelayAppRunner

    origins = origins or {}
    app = create_app(settings, worker=worker)
    runner = RelayAppRunner(
        app, access_log=None, shutdown_timeout=settings.shutdown_timeout_s, limits=ConnectionLimits.from_settings(settings),
        max_line_size=settings.max_header_bytes, max_field_size=settings.max_header_bytes,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await runner.setup()
        except DatabaseError as exc:
            chosen = origins.get("database_url" if settings.database_url else "data_dir", "")
            raise StartupError(f"database {settings.database_display}: {exc}"
                               + (f" ({chosen})" if chosen else "")) from None
        except (OSError, ValueError) as exc:  # a service refusing its settings, a file it cannot create
            raise StartupError(f"start-up failed: {exc}") from None
        site: web.BaseSite = (web.SockSite(runner, sock) if sock is not None
                              else web.TCPSite(runner, settings.host, settings.port))
        link = await _prepare_console_link(app, settings) if settings.console_link else None
        try:
            if worker is not None:
                from relay.node.handoff import socket_path

                await web.UnixSite(runner, socket_path(worker.node.run_dir, worker.index)).start()
            await site.start()
        except OSError as exc:
            chosen = origins.get("port", "")
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {reason}"
                               + (f" ({chosen})" if chosen else "")) from None
        bound = sock.getsockname() if sock is not None else (
            runner.addresses[0] if runner.addresses else (settings.host, settings.port))
        if worker is not None:
            worker.started(settings.max_calls)
            log.info("worker %d ready (pid %d)", worker.index, os.getpid(), extra={"event": "worker_ready"})
        else:
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


_SERVE_FLAGS = {"host": "--host", "port": "--port", "data_dir": "--data-dir", "workers": "--workers"}


def _run_serve(args: argparse.Namespace) -> int:
    """``relay serve``: every start-up failure is one line on stderr and exit 1 (2: a bad setting)."""
    from relay.log import configure_logging
    from relay.media import compat
    from relay.settings import origin

    flags = {name: getattr(args, name) for name in _SERVE_FLAGS if getattr(args, name) is not None}
    settings = load_settings(args.config, **flags)
    workers = worker_count(settings.workers)
    _check_worker_ports(settings, workers)
    origins = {name: origin(name, args.config, overrides=flags, override_label=_SERVE_FLAGS.get(name))
               for name in ("port", "data_dir", "database_url")}
    try:
        compat.install()  # before anything listens: one line, not a 500 per call
        _ensure_data_dir(settings, origins["data_dir"])
    except (compat.CompatError, StartupError) as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    configure_logging(settings)
    log.info("starting relay", extra={"settings": settings.redacted()})
    try:
        if workers > 1:
            from relay.node import supervisor

            return supervisor.run(settings, workers, origins, serve=serve, print_link=_print_console_link)
        event_loop_runner()(serve(settings, origins=origins))
    except StartupError as exc:
        log.debug("start-up failed", exc_info=True)
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_worker_ports(settings: Settings, workers: int) -> None:
    """Ports the workers cannot all have are a bad setting: one line, exit 2, before anything binds."""
    from relay.node.state import check_node_ports

    try:
        check_node_ports(settings.ice_mux, settings.ice_udp_port, settings.ice_port_min, settings.ice_port_max,
                         workers)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _ensure_data_dir(settings: Settings, chosen_by: str) -> None:
    """The data directory exists and relay can write there (``StartupError`` otherwise, naming the setting)."""
    import tempfile

    path = settings.data_path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise StartupError(f"the data directory {path} is not writable: {exc.strerror or exc} ({chosen_by})") from None


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
        if args.command == "call":
            from relay.client.call import main as call_main

            return call_main(args)
        if args.command == "admin":
            from relay.admin.cli import run_admin

            return run_admin(args)
    except SettingsError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    return 2
