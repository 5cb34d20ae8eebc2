"""ICE configuration for relay's aiortc peers: no public STUN, advertised host addresses restricted.

aiortc reaches out to Google's STUN server when given no ICE servers, so every
peer relay creates gets ``rtc_configuration()`` (an explicit empty list).

aioice gathers host candidates from *every* interface (and never from
127.0.0.1). Operators want to choose what is advertised (an allowlist), and the
tests need exactly 127.0.0.1. aioice has no option for it, so this module wraps
``aioice.ice.get_host_addresses`` -- the one function ``Connection.gather_candidates``
calls -- in one place, below. The wrapper is process-wide (aioice looks the name up
at call time); with no allowlist configured it behaves exactly like aioice.

1:1 NAT (``ice_public_ip``): ``advertise_public_ip(answer_sdp, ip)`` rewrites the
host candidates (and the ``c=`` lines) of relay's answer to the public address;
the NAT forwards to the private socket the candidate was gathered on, which is
all ICE needs (the device's checks arrive on that socket, and we answer from it).

Not implemented (aioice binds host sockets to port 0 with no hook short of
re-implementing candidate gathering): a fixed UDP port range. Open the kernel's
ephemeral range (``net.ipv4.ip_local_port_range``) or use the TURN farm.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable

import aioice.ice
from aiortc import RTCConfiguration

log = logging.getLogger("relay.media")

_original_get_host_addresses = aioice.ice.get_host_addresses
_allowlist: tuple[str, ...] = ()


def _restricted_get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's host-address gathering, narrowed to the configured allowlist.

    Loopback addresses in the allowlist are returned even though aioice itself
    skips 127.0.0.1; other allowlisted addresses must exist on an interface.
    """
    if not _allowlist:
        return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    present = set(_original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    out = []
    for addr in _allowlist:
        version = ipaddress.ip_address(addr).version
        if (version == 4 and not use_ipv4) or (version == 6 and not use_ipv6):
            continue
        if addr in present or ipaddress.ip_address(addr).is_loopback:
            out.append(addr)
    return out


def configure_host_addresses(addresses: Iterable[str]) -> None:
    """Restrict the host candidates every ICE agent in this process gathers.

    An empty list restores aioice's behaviour (all interfaces but loopback).
    Raises ``ValueError`` for something that is not an IP address.
    """
    global _allowlist
    parsed = tuple(str(ipaddress.ip_address(a.strip())) for a in addresses if a.strip())
    _allowlist = parsed
    aioice.ice.get_host_addresses = _restricted_get_host_addresses
    log.info("ICE host addresses restricted to %s", ", ".join(parsed) if parsed else "all interfaces")


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
