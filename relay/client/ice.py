"""Restricting the host addresses aioice gathers, per call, without touching global config.

aioice gathers a host candidate on every interface (and never on 127.0.0.1).
Tests and loopback benches need exactly ``127.0.0.1``; devices on multi-homed
machines may want one interface. :func:`host_addresses` sets, for the current
asyncio context only, the list ``aioice.ice.get_host_addresses`` returns; the
gathering tasks aiortc starts inside ``setLocalDescription`` inherit it. Outside
such a block the previous function (aioice's, or whatever another component
installed) answers unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import aioice.ice

_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "relay_client_host_addresses", default=None
)


def _make_dispatch(previous: Any) -> Any:
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        allowed = _ADDRESSES.get()
        if allowed is None:
            return previous(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return [a for a in allowed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    get_host_addresses.relay_client_dispatch = True  # type: ignore[attr-defined]
    return get_host_addresses


def _ensure_installed() -> None:
    current = aioice.ice.get_host_addresses
    if not getattr(current, "relay_client_dispatch", False):
        aioice.ice.get_host_addresses = _make_dispatch(current)


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this block (this asyncio context), ICE gathers only on ``addresses``.

    ``None`` leaves aioice's default (all interfaces but loopback).
    """
    if addresses is None:
        yield
        return
    _ensure_installed()
    token = _ADDRESSES.set(tuple(addresses))
    try:
        yield
    finally:
        _ADDRESSES.reset(token)
