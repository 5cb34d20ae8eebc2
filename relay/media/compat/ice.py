"""aioice's host addresses and host candidates: the one module-level hook, and the per-connection ones.

**Host addresses** (which interfaces an ICE agent gathers host candidates on). aioice has no option
for it: ``Connection.gather_candidates`` calls the module function ``aioice.ice.get_host_addresses``,
with no reference to the connection. ``install()`` replaces that function once per process by
``_dispatch`` (idempotent; the replaced function is kept and still answers). ``_dispatch`` answers,
first match wins:

1. the addresses of the gathering under way: ``gathering_on(addresses)`` sets them for one asyncio
   context (a contextvar), and the gathering tasks aiortc starts inside ``setLocalDescription``
   inherit it. relay's peers gather under the media plane's allowlist (``relay.media.ice``), the
   device SDK's under the list its caller gave (``relay.client.ice``); in one process each gets
   what it asked for, whatever the order of their set-up;
2. the process default, ``set_default_host_addresses(...)``: only for tools and tests whose plain
   aiortc peers should gather on an allowlist too (the test suite keeps them on 127.0.0.1);
   relay itself never sets it;
3. otherwise the replaced function (aioice's own): any other aiortc user in the process gathers
   exactly as without relay.

**Host candidates** of relay's own connections: ``replace_component_candidates(connection, gather)``
replaces ``Connection.get_component_candidates`` on that instance only (relay binds the sockets
itself, or hands out the worker's one ICE port); ``add_host_candidate`` does what aioice does with
each socket it bound.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aioice.ice
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

#: ``(use_ipv4, use_ipv6) -> addresses``, the signature of ``aioice.ice.get_host_addresses``
HostAddresses = Callable[[bool, bool], list[str]]

_gathering: contextvars.ContextVar[HostAddresses | None] = contextvars.ContextVar(
    "relay_ice_host_addresses", default=None)
_default: HostAddresses | None = None
_replaced: HostAddresses | None = None  # what aioice.ice.get_host_addresses was before install()


def _dispatch(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _gathering.get() or _default
    if chosen is not None:
        return chosen(use_ipv4, use_ipv6)
    return aioice_host_addresses(use_ipv4, use_ipv6)


def install() -> None:
    """Put ``_dispatch`` in place of ``aioice.ice.get_host_addresses``: once per process."""
    global _replaced
    if _replaced is None:
        _replaced = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = _dispatch


def installed() -> bool:
    return _replaced is not None and aioice.ice.get_host_addresses is _dispatch


def aioice_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's own answer: every interface's address but loopback (enumerated now, ~0.3 ms)."""
    own = _replaced if _replaced is not None else aioice.ice.get_host_addresses
    return own(use_ipv4=use_ipv4, use_ipv6=use_ipv6)  # type: ignore[call-arg]


def fixed(addresses: Sequence[str]) -> HostAddresses:
    """A fixed list, narrowed to the address families the agent gathers."""
    chosen = tuple(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    return host_addresses


@contextlib.contextmanager
def gathering_on(addresses: HostAddresses) -> Iterator[None]:
    """Within this block (this asyncio context, and the tasks started in it) ICE agents gather their
    host candidates on ``addresses(use_ipv4, use_ipv6)``."""
    install()
    token = _gathering.set(addresses)
    try:
        yield
    finally:
        _gathering.reset(token)


def set_default_host_addresses(addresses: Sequence[str] | None) -> None:
    """Process-wide: the host addresses of agents gathering outside ``gathering_on`` (None: aioice's).

    For tools and tests whose plain aiortc peers should gather on an allowlist; relay never calls it.
    """
    global _default
    if addresses is not None:
        install()
    _default = fixed(addresses) if addresses is not None else None


# -- relay's own connections: per instance ------------------------------------------------------

def ice_connections(pc: Any) -> list[aioice.ice.Connection]:
    """The aioice connections of an ``RTCPeerConnection`` (one with BUNDLE)."""
    gatherers: list[Any] = [t.sender.transport.transport.iceGatherer for t in pc.getTransceivers()]
    if pc.sctp is not None:
        gatherers.append(pc.sctp.transport.transport.iceGatherer)
    out: list[aioice.ice.Connection] = []
    for gatherer in gatherers:
        conn = gatherer._connection
        if conn not in out:
            out.append(conn)
    return out


def replace_component_candidates(connection: aioice.ice.Connection,
                                 gather: Callable[[int, list[str]], Awaitable[list[Candidate]]]) -> None:
    """``connection`` gathers a component's host candidates with ``gather(component, addresses)``."""

    async def get_component_candidates(component: int, addresses: list[str],
                                       timeout: int = 5) -> list[Candidate]:  # noqa: ASYNC109 (aioice's signature)
        return await gather(component, addresses)

    connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]


def add_host_candidate(connection: aioice.ice.Connection, protocol: aioice.ice.StunProtocol, component: int,
                       host: str, port: int) -> Candidate:
    """Give ``protocol`` its UDP host candidate at ``host:port`` and add it to ``connection``, as aioice's
    ``get_component_candidates`` does (per-call sockets in ``relay.media.ice``, the worker's port in
    ``relay.media.mux``)."""
    protocol.local_candidate = Candidate(
        foundation=candidate_foundation("host", "udp", host), component=component, transport="udp",
        priority=candidate_priority(component, "host"), host=host, port=port, type="host")
    connection._protocols.append(protocol)
    return protocol.local_candidate
