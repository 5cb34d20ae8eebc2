"""The SDP hand-off: a worker that should not answer a new call gives the request to a sibling.

Every worker accepts on the node's one listening socket, so the kernel may hand ``POST
/v1/realtime`` to a full worker while a sibling has room (or keep handing connections to the same
worker). That worker then passes the request as it came (headers, the offer) to the sibling over
the sibling's private Unix socket (``<run_dir>/w<i>.sock``, in a directory only relay's user can
open), and returns the sibling's answer unchanged. The sibling authenticates and answers, so the
call lives entirely in the sibling: its ICE sockets, DTLS, media and upstream. A request that
arrived over a private socket is never handed on again, and only there is the caller's address
taken from ``X-Relay-Remote`` (the first worker saw the TCP peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

log = logging.getLogger("relay.node")

REMOTE_HEADER = "X-Relay-Remote"
_HOP = {"host", "connection", "keep-alive", "content-length", "transfer-encoding", "upgrade", "te", "trailer",
        "proxy-authorization", REMOTE_HEADER.lower()}
_BACK = ("Content-Type", "X-Session-Id", "Server-Timing", "Retry-After", "WWW-Authenticate")
HANDED_OFF = "relay_handed_off"  # request key: answered by a sibling (not counted twice in setup latency)


def socket_path(run_dir: str, index: int) -> str:
    return str(Path(run_dir) / f"w{index}.sock")


def arrived_from_sibling(request: web.Request) -> bool:
    """The request came over this worker's private Unix socket (a sibling handed it over)."""
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


class Siblings:
    """One HTTP client per sibling (over its Unix socket), opened on first use, closed with the worker."""

    def __init__(self, run_dir: str, timeout_s: float) -> None:
        self.run_dir = run_dir
        self.timeout_s = timeout_s
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=socket_path(self.run_dir, index)),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), auto_decompress=False)
            self._sessions[index] = session
        return session

    async def forward(self, index: int, request: web.Request, body: bytes, remote: str) -> web.Response | None:
        """The sibling's response to the same request; None when the sibling cannot be reached."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers[REMOTE_HEADER] = remote
        try:
            async with self._session(index).request(request.method, "http://relay-node" + request.path_qs,
                                                    headers=headers, data=body) as resp:
                payload = await resp.read()
                back = {k: resp.headers[k] for k in _BACK if k in resp.headers}
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("hand-off to worker %d failed: %s", index, type(exc).__name__)
            return None
        request[HANDED_OFF] = True
        return web.Response(status=resp.status, body=payload, headers=back)

    async def proxy_websocket(self, index: int, request: web.Request, remote: str, ws: web.WebSocketResponse,
                              on_handed: Callable[[], None] = lambda: None) -> web.WebSocketResponse | None:
        """The WebSocket edge's hand-off: the sibling runs the call (its upstream, its registry slot)
        and this worker only relays the frames both ways, close code included. None when the
        sibling refuses or cannot be reached (this worker then answers as it would have)."""
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in _HOP and not k.lower().startswith("sec-websocket")}
        headers[REMOTE_HEADER] = remote
        try:
            upstream = await self._session(index).ws_connect(
                "http://relay-node" + request.path_qs, headers=headers, autoping=True, max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("WebSocket hand-off to worker %d refused: %s", index, getattr(exc, "status", type(exc).__name__))
            return None
        request[HANDED_OFF] = True
        on_handed()  # the call runs in the sibling from now on (this returns when it ends)
        session_id = getattr(upstream, "_response", None)
        if session_id is not None and "X-Session-Id" in session_id.headers:
            ws.headers["X-Session-Id"] = session_id.headers["X-Session-Id"]
        await ws.prepare(request)
        down = asyncio.ensure_future(_pump(upstream, ws))
        up = asyncio.ensure_future(_pump(ws, upstream))
        try:
            await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (down, up):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            code = upstream.close_code if upstream.closed else ws.close_code
            await upstream.close(code=ws.close_code or 1000)
            await ws.close(code=code or 1000)
        return ws

    async def text(self, index: int, path: str, headers: dict[str, str]) -> str | None:
        """A sibling's own answer to ``GET path`` (e.g. its ``/metrics``); None when it does not answer 200."""
        try:
            async with self._session(index).get("http://relay-node" + path, headers=headers) as resp:
                return await resp.text() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError, UnicodeDecodeError):
            return None

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


async def _pump(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    """Frames from ``src`` to ``dst`` until ``src`` closes; then ``dst`` is closed with its code and reason."""
    while True:
        msg = await src.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        else:
            reason = msg.extra.encode() if msg.type == aiohttp.WSMsgType.CLOSE and isinstance(msg.extra, str) else b""
            await dst.close(code=src.close_code or 1000, message=reason)
            return
