"""Server-side tool executor: POST the call to the tool's webhook (thin I/O edge).

Always returns a JSON string for ``CallCore.on_tool_result``: the webhook's JSON
answer, ``{"result": "<text>"}`` for a non-JSON answer, or ``{"error": ...}``.
Webhooks on private, loopback, link-local or otherwise non-public addresses are
refused unless the operator allows them (``tool_allow_private``); the check runs
on every address the name resolves to, at connect time (no DNS-rebinding gap),
and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

log = logging.getLogger("relay.call.tools")


class ToolRefused(Exception):
    """The webhook URL may not be called."""


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """A resolver that refuses names resolving to non-public addresses (unless allowed)."""

    def __init__(self, allow_private: bool = False) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for r in results:
                if not address_is_public(r["host"]):
                    raise ToolRefused(f"webhook host {host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def make_tool_session(*, allow_private: bool = False) -> aiohttp.ClientSession:
    """The HTTP client session tool calls must use (one per worker is enough)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private), limit=100, limit_per_host=10)
    return aiohttp.ClientSession(connector=connector, trust_env=False)


def _error(message: str) -> str:
    return orjson.dumps({"error": message}).decode()


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise ``ToolRefused`` for non-http(s) URLs and IP-literal hosts that are not public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolRefused("webhook URL must be http(s) with a host")
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: checked by GuardedResolver at connect time
    if not allow_private and not address_is_public(parts.hostname):
        raise ToolRefused("webhook address is not public")


async def run_webhook_tool(
    session: aiohttp.ClientSession,
    url: str,
    *,
    name: str,
    call_id: str,
    arguments: str,
    timeout_s: float = 10.0,
    max_response_bytes: int = 64 * 1024,
    allow_private: bool = False,
) -> str:
    """POST ``{"name", "call_id", "arguments"}`` to ``url``; the result (or an error) as JSON text."""
    try:
        check_url(url, allow_private=allow_private)
    except ToolRefused as exc:
        log.warning("tool %s refused: %s", name, exc)
        return _error(f"tool webhook refused: {exc}")
    try:
        args: Any = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        args = arguments
    body = {"name": name, "call_id": call_id, "arguments": args}
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, json=body, allow_redirects=False,
                                    headers={"Content-Type": "application/json"}) as resp:
                data = await resp.content.read(max_response_bytes + 1)
                status = resp.status
    except TimeoutError:
        return _error(f"tool {name} timed out after {timeout_s:g} s")
    except ToolRefused as exc:
        log.warning("tool %s refused: %s", name, exc)
        return _error(f"tool webhook refused: {exc}")
    except (aiohttp.ClientError, OSError) as exc:
        return _error(f"tool {name} failed: {type(exc).__name__}")
    if len(data) > max_response_bytes:
        return _error(f"tool {name} answered more than {max_response_bytes} bytes")
    if not 200 <= status < 300:
        return _error(f"tool {name} answered HTTP {status}")
    try:
        return orjson.dumps(orjson.loads(data)).decode()
    except orjson.JSONDecodeError:
        return orjson.dumps({"result": data.decode("utf-8", "replace")}).decode()
