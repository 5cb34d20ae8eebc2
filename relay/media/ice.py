"""ICE configuration for relay's aiortc peers: no public STUN, advertised host addresses restricted.

aiortc reaches out to Google's STUN server when given no ICE servers, so every
peer relay creates gets ``rtc_configuration()`` (an explicit empty list).

aioice gathers host candidates from *every* interface (and never from
127.0.0.1). Operators want to choose what is advertised (an allowlist), and the
tests need exactly 127.0.0.1. ``configure_host_addresses`` sets the media plane's
allowlist; relay's peers gather on it (``gathering()`` around ``setLocalDescription``,
through the one aioice hook of ``relay.media.compat.ice``). Only relay's own connections
are restricted: other aiortc users in the process (the device SDK, test devices) gather
on what they asked for. With no allowlist relay's peers gather as aioice does.

1:1 NAT (``ice_public_ip``): ``advertise_public_ip(answer_sdp, ip)`` rewrites the
host candidates (and the ``c=`` lines) of relay's answer to the public address;
the NAT forwards to the private socket the candidate was gathered on, which is
all ICE needs (the device's checks arrive on that socket, and we answer from it).

Host candidates (``install_gatherer(pc, port_range)``, on relay's own ICE connections only: a
per-instance hook of ``relay.media.compat.ice``, not a global patch): aioice binds each host socket with
``create_datagram_endpoint(local_addr=...)``, which makes the loop resolve the address first
(uvloop: on libuv's thread pool, ~10 loop turns -- under load the slowest step of an answer) and
has no option for a port range. ``_host_candidates`` below gathers the same host candidates, binding
each socket synchronously (a free port of ``ice_port_min``..``ice_port_max`` when configured) and
handing it over with ``sock=``. relay's peers never have STUN/TURN servers, so host candidates are
all there is to gather.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import re
import socket
import time
from collections.abc import Iterable
from typing import Any

import aioice.ice
import aioice.turn
from aioice.candidate import Candidate
from aiortc import RTCConfiguration, RTCPeerConnection

from relay.media.compat import ice as compat_ice
from relay.media.compat.ice import add_host_candidate

log = logging.getLogger("relay.media")

_enumerate_interfaces = compat_ice.aioice_host_addresses
_allowlist: tuple[str, ...] = ()

INTERFACES_TTL_S = 10.0  # interface addresses are enumerated at most this often (not once per call)
_interfaces: dict[tuple[bool, bool], tuple[float, list[str]]] = {}


def _interface_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's enumeration of the interfaces' addresses (~0.3 ms), cached for ``INTERFACES_TTL_S``.

    Every call set-up gathers candidates; the interfaces of a server change rarely, and a change
    is seen by new calls within the TTL.
    """
    key = (use_ipv4, use_ipv6)
    now = time.monotonic()
    hit = _interfaces.get(key)
    if hit is None or now - hit[0] >= INTERFACES_TTL_S:
        hit = (now, _enumerate_interfaces(use_ipv4, use_ipv6))
        _interfaces[key] = hit
    return list(hit[1])


def _restricted_get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's host-address gathering, narrowed to the configured allowlist.

    Loopback addresses in the allowlist are returned even though aioice itself
    skips 127.0.0.1; other allowlisted addresses must exist on an interface.
    """
    if not _allowlist:
        return _interface_addresses(use_ipv4, use_ipv6)
    present: set[str] | None = None  # enumerating interfaces: only when needed
    out = []
    for addr in _allowlist:
        ip = ipaddress.ip_address(addr)
        if (ip.version == 4 and not use_ipv4) or (ip.version == 6 and not use_ipv6):
            continue
        if ip.is_loopback:
            out.append(addr)
            continue
        if present is None:
            present = set(_interface_addresses(use_ipv4, use_ipv6))
        if addr in present:
            out.append(addr)
    return out


def configure_host_addresses(addresses: Iterable[str]) -> None:
    """Restrict the host candidates relay's peers gather (the media plane's allowlist).

    An empty list: aioice's choice (all interfaces but loopback). Raises ``ValueError`` for
    something that is not an IP address. Other ICE agents in the process are not affected.
    """
    global _allowlist
    parsed = tuple(str(ipaddress.ip_address(a.strip())) for a in addresses if a.strip())
    _allowlist = parsed
    _interfaces.clear()
    log.info("ICE host addresses restricted to %s", ", ".join(parsed) if parsed else "all interfaces")


def gathering() -> contextlib.AbstractContextManager[None]:
    """Within this block (this asyncio context) ICE agents gather on the allowlist: wrap relay's peers'
    ``setLocalDescription`` in it."""
    return compat_ice.gathering_on(_restricted_get_host_addresses)


def gather_addresses() -> list[str]:
    """The addresses host candidates are gathered on now (the allowlist, else every interface's)."""
    return _restricted_get_host_addresses(use_ipv4=True, use_ipv6=True)


def host_addresses() -> tuple[str, ...]:
    """The configured allowlist (empty: all interfaces)."""
    return _allowlist


def rtc_configuration() -> RTCConfiguration:
    """The configuration of every peer relay creates: no STUN/TURN servers, never Google's STUN."""
    return RTCConfiguration(iceServers=[])


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$")
_CONNECTION = re.compile(r"^(c=IN|a=rtcp:\d+ IN) IP(4|6) (\S+)$")


def advertise_public_ip(sdp: str, public_ip: str) -> str:
    """``sdp`` with every host candidate address (and ``c=`` / ``a=rtcp`` address) replaced by ``public_ip``."""
    version = ipaddress.ip_address(public_ip).version
    out = []
    for line in sdp.splitlines():
        m = _CANDIDATE.match(line)
        if m:
            line = f"{m.group(1)}{public_ip}{m.group(3)}"
        else:
            m = _CONNECTION.match(line)
            if m and m.group(3) not in ("0.0.0.0", "::"):
                line = f"{m.group(1)} IP{version} {public_ip}"
        out.append(line)
    return "\r\n".join(out) + "\r\n"


MAX_BIND_ATTEMPTS = 64


class NoFreePort(Exception):
    """No UDP port of the configured range could be bound."""


def _bind_udp(address: str, port_range: tuple[int, int] | None) -> socket.socket | None:
    """A non-blocking UDP socket bound to ``address`` (a free port of ``port_range``, else any), or None."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    ports: list[int] = [0]
    if port_range is not None:
        span = range(port_range[0], port_range[1] + 1)
        ports = random.sample(span, min(len(span), MAX_BIND_ATTEMPTS))
    for port in ports:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        return sock
    return None


async def _host_candidates(connection: aioice.ice.Connection, component: int, addresses: list[str],
                           port_range: tuple[int, int] | None) -> list[Candidate]:
    """aioice's host-candidate gathering (``Connection.get_component_candidates``) for relay's peers.

    The same candidates, but each socket is bound here, synchronously, and handed to
    ``create_datagram_endpoint(sock=...)``: with ``local_addr=`` the event loop resolves the
    address first (uvloop: on libuv's thread pool, ~10 loop turns), which under load is the
    slowest part of building an answer. Ports come from ``port_range`` when one is configured.
    """
    loop = asyncio.get_running_loop()
    candidates: list[Candidate] = []
    for address in addresses:
        sock = _bind_udp(address, port_range)
        if sock is None:
            if port_range is not None:
                log.warning("no free UDP port in %d..%d on %s", port_range[0], port_range[1], address)
            else:
                log.info("could not bind a UDP socket on %s", address)
            continue
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), sock=sock)
        except OSError:
            sock.close()
            continue
        host, port = transport.get_extra_info("sockname")[:2]
        candidates.append(add_host_candidate(connection, protocol, component, host, port))
    return candidates


def install_gatherer(pc: RTCPeerConnection, port_range: tuple[int, int] | None = None, mux: Any = None) -> None:
    """Make ``pc`` gather its host candidates with ``_host_candidates`` (on ``port_range`` if given),
    or, with ``mux`` (a ``relay.media.mux.IceMux``), on the worker's one ICE port.

    Call before ``createAnswer`` (which writes the ICE ufrag the mux routes by) and
    ``setLocalDescription`` (which gathers). Connections with a STUN/TURN server (never
    relay's: ``rtc_configuration()`` has none) keep aioice's gathering.
    """
    if port_range is not None and not 0 < port_range[0] <= port_range[1] <= 65535:
        raise ValueError("the ICE port range must satisfy 0 < min <= max <= 65535")
    for conn in compat_ice.ice_connections(pc):
        if conn.stun_server or conn.turn_server:
            continue
        if mux is not None:
            mux.reserve(conn)

            async def gather_mux(component: int, addresses: list[str],
                                 _conn: aioice.ice.Connection = conn) -> list[Candidate]:
                return await mux.host_candidates(_conn, component, addresses)

            compat_ice.replace_component_candidates(conn, gather_mux)
            continue

        async def gather(component: int, addresses: list[str],
                         _conn: aioice.ice.Connection = conn) -> list[Candidate]:
            return await _host_candidates(_conn, component, addresses, port_range)

        compat_ice.replace_component_candidates(conn, gather)
