"""The built-in local assistant's WebSocket server: ``GET /v1/realtime`` (aiohttp).

Dialect as OpenAI does it: beta when the client sends ``OpenAI-Beta: realtime=v1``,
GA otherwise. Mode from the ``model`` query parameter (see ``relay.assistant.session``).
``expire_s`` (query) shortens the session lifetime, to test upstream recycling.

Entry points: ``start_local_assistant()`` (used by ``relay serve`` from a cleanup
context) and ``main()`` (``relay assistant --port N`` / ``python -m relay.assistant``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from relay.assistant.session import LocalSession
from relay.upstream import dialect as dl

log = logging.getLogger("relay.assistant")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SESSIONS: web.AppKey[set[LocalSession]] = web.AppKey("local_assistant_sessions")
CONFIG = web.AppKey("local_assistant_config", dict)


def _dialect(request: web.Request) -> str:
    beta = request.headers.get("OpenAI-Beta", "")
    return dl.BETA if "realtime=v1" in beta.replace(" ", "") else dl.GA


async def realtime_ws(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    try:
        expire_s = float(request.query.get("expire_s", config["session_s"]))
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": {"message": "expire_s must be a number", '
                                      '"type": "invalid_request_error", "code": "invalid_value"}}',
                                 content_type="application/json") from None
    expire_s = max(0.05, min(expire_s, config["session_s"]))
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, compress=False, heartbeat=None)
    await ws.prepare(request)
    lock = asyncio.Lock()

    async def send(event: dict[str, Any]) -> None:
        async with lock:
            await ws.send_str(orjson.dumps(event).decode())

    async def close(code: int, reason: str) -> None:
        await ws.close(code=code, message=reason.encode()[:120])

    session = LocalSession(model=request.query.get("model", "relay-echo"), dialect=_dialect(request),
                           send=send, close=close, speedup=config["speedup"])
    request.app[SESSIONS].add(session)
    log.info("local assistant session %s (%s, %s)", session.id, session.model, session.dialect)
    try:
        await session.start()
        async with asyncio.timeout(expire_s):
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await session.receive(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await session.error("Binary messages are not supported; send JSON text.",
                                        code="invalid_message")
                if session.closed:
                    break
    except TimeoutError:
        if not session.closed:
            minutes = expire_s / 60
            await session.error(f"Your session hit the maximum duration of {minutes:g} minutes.",
                                code="session_expired")
            await session.shutdown(1000, "session expired")
    except ConnectionError:
        pass  # the client went away
    finally:
        request.app[SESSIONS].discard(session)
        with contextlib.suppress(ConnectionError):
            await session.shutdown(1000, "")
    return ws


async def _close_all(app: web.Application) -> None:
    live = app[SESSIONS]
    for session in list(live):  # a copy: handlers discard themselves as they end
        with contextlib.suppress(ConnectionError):
            await session.shutdown(1001, "server shutting down")


def create_assistant_app(*, session_s: float = 3600.0, speedup: float = 4.0) -> web.Application:
    app = web.Application()
    app[SESSIONS] = set()
    app[CONFIG] = {"session_s": float(session_s), "speedup": float(speedup)}
    app.router.add_get("/v1/realtime", realtime_ws)
    app.on_shutdown.append(_close_all)
    return app


async def start_local_assistant(host: str = "127.0.0.1", port: int = 0, *, session_s: float = 3600.0,
                                speedup: float = 4.0) -> tuple[web.AppRunner, str]:
    """Start the local assistant on ``host:port`` (0: any free port). Returns the runner (call
    ``await runner.cleanup()`` to stop it) and its WebSocket URL ``ws://host:port/v1/realtime``."""
    runner = web.AppRunner(create_assistant_app(session_s=session_s, speedup=speedup), handle_signals=False,
                           access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    return runner, f"ws://{host}:{bound}/v1/realtime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    parser.add_argument("--session-s", type=float, default=3600.0, help="session lifetime, seconds")
    parser.add_argument("--speedup", type=float, default=4.0, help="response streaming speed vs real time")


async def serve(args: argparse.Namespace) -> None:
    runner, url = await start_local_assistant(args.host, args.port, session_s=args.session_s, speedup=args.speedup)
    print(f"relay local assistant listening on {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``relay assistant [--host H] [--port N]``: run the local assistant alone."""
    parser = argparse.ArgumentParser(prog="relay assistant", description="relay's built-in local Realtime assistant")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0
