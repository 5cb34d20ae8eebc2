"""The upstream Realtime WebSocket client (thin I/O edge over aiohttp).

``connect_request(assistant, ...)`` says where and how to connect per provider;
``UpstreamClient`` owns one WebSocket: sends written at once while the socket keeps up, a
bounded send queue drained by one writer task it owns while it does not, a receive iterator of
parsed events, and a clean close.

Sending: an event is serialised once, to UTF-8 JSON bytes (``send_json``; ``send`` serialises a
dict), and written as a text frame by aiohttp's public ``send_frame``. With nothing queued and no
write in progress the frame goes to the transport inside the ``send`` call (no queue, no task
wake-up): ``send_frame`` has no await point before the write; its only one comes after it, a
wait for the transport to drain once aiohttp's writer is over its limit and the transport is
paused. When that happens the half-run send (frame already written) becomes the queue's first
item and the writer task finishes it; later sends queue behind it, so frames leave in the order
``send`` was called, and at most ``send_queue_max`` events wait (the rest are refused and counted
in ``dropped_sends``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

log = logging.getLogger("relay.upstream")

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"
BETA_HEADER = ("OpenAI-Beta", "realtime=v1")
MAX_UPSTREAM_MESSAGE_BYTES = 16 * 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached, refused us, or failed mid-call. The message is safe to show."""


@dataclass(frozen=True)
class ConnectRequest:
    url: str
    headers: dict[str, str]

    def __repr__(self) -> str:  # never print credentials
        return f"ConnectRequest(url={self.url!r}, headers={sorted(self.headers)!r})"


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for key, value in params.items():
        query.setdefault(key, value)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def connect_request(assistant: Any, *, local_url: str = "") -> ConnectRequest:
    """URL and headers for the assistant's upstream.

    * ``openai``: ``wss://api.openai.com/v1/realtime?model=...`` (or ``upstream_url``), ``Authorization: Bearer``
    * ``azure``: ``upstream_url`` as configured (deployment/api-version in it), ``api-key`` header
    * ``compatible``: ``upstream_url``, ``Authorization: Bearer`` when a key is set
    * ``local``: the built-in local assistant at ``local_url`` (or ``upstream_url``), no key
    Beta upstreams also get ``OpenAI-Beta: realtime=v1``.
    """
    provider = assistant.provider
    headers: dict[str, str] = {}
    if provider == "openai":
        url = assistant.upstream_url or OPENAI_REALTIME_URL
    elif provider == "local":
        url = assistant.upstream_url or local_url
    else:
        url = assistant.upstream_url
    if not url:
        raise UpstreamError(f"assistant has no upstream URL (provider {provider})")
    if urlsplit(url).scheme not in ("ws", "wss", "http", "https"):
        raise UpstreamError("upstream URL must be ws://, wss://, http:// or https://")
    if provider == "azure":
        if assistant.api_key:
            headers["api-key"] = assistant.api_key
        query = dict(parse_qsl(urlsplit(url).query))
        if "deployment" not in query and "model" not in query:
            url = _with_query(url, model=assistant.model)
    else:
        if assistant.api_key:
            headers["Authorization"] = f"Bearer {assistant.api_key}"
        url = _with_query(url, model=assistant.model)
    if assistant.dialect == "beta":
        headers[BETA_HEADER[0]] = BETA_HEADER[1]
    return ConnectRequest(url=url, headers=headers)


_ABORT = object()  # a write failed in ``send``: the writer task closes the socket
_TEXT = aiohttp.WSMsgType.TEXT


class _Suspended:
    """A ``send_frame`` run up to its wait for the transport to drain (its frame is already written)."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    async def finish(self) -> None:
        """Run the send to its end: wait for what it waits on, resume it, until it returns (or raises)."""
        coro, waiting_on = self.coro, self.waiting_on
        try:
            while True:
                if waiting_on is None:  # a bare yield (none today): one loop turn
                    await asyncio.sleep(0)
                else:
                    # wait for it to be done without awaiting it a second time (its outcome reaches
                    # the send when the send is resumed)
                    await asyncio.wait((waiting_on,))
                waiting_on = coro.send(None)
        except StopIteration:
            return
        finally:
            coro.close()  # a no-op once it has returned; ends it when the writer is cancelled

    def discard(self) -> None:
        self.coro.close()


def _error_reason(data: Any, exc: BaseException | None) -> str:
    """A clear close reason for an ERROR message (aiohttp puts the exception in ``data``)."""
    err = data if isinstance(data, BaseException) else exc
    if isinstance(err, aiohttp.WebSocketError) and err.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
        return f"upstream sent a message larger than the {MAX_UPSTREAM_MESSAGE_BYTES}-byte limit"
    if err is None:
        return "upstream error (no detail)"
    return f"upstream error: {type(err).__name__}: {str(err)[:200]}"


class UpstreamClient:
    """One upstream WebSocket.

    ``await connect()``, then ``send(event)`` (non-blocking, bounded) and
    ``async for event in client.events()`` until the socket closes;
    ``close_reason`` says why. ``await close()`` always, in a ``finally``.
    """

    def __init__(self, session: aiohttp.ClientSession, request: ConnectRequest, *,
                 connect_timeout_s: float = 10.0, send_queue_max: int = 512, log_id: str = "",
                 heartbeat_s: float = 3.0) -> None:
        self._session = session
        self._request = request
        self._connect_timeout_s = connect_timeout_s
        self._heartbeat_s = heartbeat_s
        #: the socket ended because the upstream stopped answering pings (frozen, or the path is gone)
        self.timed_out = False
        if send_queue_max < 1:
            raise ValueError("send_queue_max must be at least 1")
        # waiting sends: JSON bytes, a _Suspended send (first only) or _ABORT
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=send_queue_max)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writer_busy = False  # the writer task has taken a send off the queue and not finished it
        self._closing = False  # close() began or a write failed: sends are refused
        self._log_id = log_id
        self.close_reason: str | None = None
        self.dropped_sends = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                self._ws = await self._session.ws_connect(
                    self._request.url, headers=self._request.headers, autoping=True, heartbeat=self._heartbeat_s,
                    max_msg_size=MAX_UPSTREAM_MESSAGE_BYTES, compress=0)
        except TimeoutError:
            raise UpstreamError(f"upstream connect timed out after {self._connect_timeout_s:g} s") from None
        except aiohttp.WSServerHandshakeError as exc:
            raise UpstreamError(f"upstream refused the connection (HTTP {exc.status})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"upstream unreachable: {type(exc).__name__}") from None
        self._writer = asyncio.create_task(self._write_loop(), name=f"upstream-writer {self._log_id}")
        log.info("upstream connected", extra={"session_id": self._log_id})

    @property
    def queued_sends(self) -> int:
        """Sends waiting for the socket (the back-pressure path), at most ``send_queue_max``."""
        return self._queue.qsize()

    def send(self, event: dict[str, Any]) -> bool:
        """Send one event (serialised here); see ``send_json``."""
        return self.send_json(orjson.dumps(event))

    def send_json(self, data: bytes) -> bool:
        """Send one event already serialised as UTF-8 JSON text, as a text frame: written now when
        nothing waits, else queued behind what does. ``False`` (and counted in ``dropped_sends``) when
        closed, closing, or ``send_queue_max`` sends already wait."""
        if self._closing or not self.connected:
            self.dropped_sends += 1
            return False
        if self._writer_busy or not self._queue.empty():
            try:
                self._queue.put_nowait(data)
            except asyncio.QueueFull:
                self.dropped_sends += 1
                log.warning("upstream send queue full, event dropped", extra={"session_id": self._log_id})
                return False
            return True
        assert self._ws is not None
        coro = self._ws.send_frame(data, _TEXT)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return True  # written
        except (ConnectionError, aiohttp.ClientError) as exc:
            coro.close()
            self.dropped_sends += 1
            self._fail(exc)
            return False
        except BaseException:
            coro.close()
            raise
        # written, and now waiting for the transport to drain: the writer task finishes it
        self._queue.put_nowait(_Suspended(coro, waiting_on))  # the queue was empty
        return True

    def _fail(self, exc: BaseException) -> None:
        """A write failed: refuse further sends, and have the writer task close the socket."""
        self.close_reason = self.close_reason or f"send failed: {type(exc).__name__}"
        self._closing = True
        with contextlib.suppress(asyncio.QueueFull):  # only after a failed write in send(): queue empty
            self._queue.put_nowait(_ABORT)

    async def _write_loop(self) -> None:
        assert self._ws is not None
        ws = self._ws
        try:
            while True:
                item = await self._queue.get()
                if item is _ABORT:
                    await ws.close()
                    return
                self._writer_busy = True
                if isinstance(item, _Suspended):
                    await item.finish()
                else:
                    await ws.send_frame(item, _TEXT)
                self._writer_busy = False  # no await until the next get(): send() sees the queue as it is
        except (ConnectionError, aiohttp.ClientError) as exc:
            self.close_reason = self.close_reason or f"send failed: {type(exc).__name__}"
            self._closing = True
            await ws.close()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Parsed JSON events until the socket closes (non-object / non-JSON messages are logged and skipped)."""
        if self._ws is None:
            raise UpstreamError("not connected")
        async for msg in self._ws:
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    event = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    log.warning("upstream sent invalid JSON", extra={"session_id": self._log_id})
                    continue
                if isinstance(event, dict) and isinstance(event.get("type"), str):
                    yield event
                else:
                    log.warning("upstream sent a non-event message", extra={"session_id": self._log_id})
            elif msg.type == aiohttp.WSMsgType.ERROR:
                err = msg.data if isinstance(msg.data, BaseException) else self._ws.exception()
                if isinstance(err, aiohttp.WebSocketError) and err.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                    self.close_reason = self.close_reason or _error_reason(err, None)
                break
        exc = self._ws.exception()
        if isinstance(exc, aiohttp.ServerTimeoutError) and self.close_reason is None:  # no pong in heartbeat_s / 2
            self.timed_out = True
            self.close_reason = f"upstream stopped answering (no pong {self._heartbeat_s * 1.5:g} s into its silence)"
        elif exc is not None:
            self.close_reason = self.close_reason or f"upstream error: {exc!r}"
        if self.close_reason is None:
            code = self._ws.close_code
            self.close_reason = f"upstream closed (code {code})" if code is not None else "upstream closed"

    async def close(self) -> None:
        """Stop the writer, drop what still waits to be sent, close the socket. Idempotent."""
        self.close_reason = self.close_reason or "closed by relay"
        self._closing = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Suspended):
                item.discard()
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
                async with asyncio.timeout(2.0):
                    await self._ws.close()
