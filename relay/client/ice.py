"""Restricting the host addresses the device SDK's ICE agent gathers, per call, without global config.

aioice gathers a host candidate on every interface (and never on 127.0.0.1).
Tests and loopback benches need exactly ``127.0.0.1``; devices on multi-homed
machines may want one interface. :func:`host_addresses` sets, for the current
asyncio context only, the list aioice's ICE agents gather on; the gathering tasks
aiortc starts inside ``setLocalDescription`` inherit it. Outside such a block
gathering is unchanged. The one hook into aioice is ``relay.media.compat.ice``,
shared with relay's own peers: a relay and a device in one process each gather
on what they asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from relay.media.compat import ice as compat_ice


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this block (this asyncio context), ICE gathers only on ``addresses``.

    ``None`` leaves the gathering as it is outside the block (aioice's default: all interfaces
    but loopback).
    """
    if addresses is None:
        yield
        return
    with compat_ice.gathering_on(compat_ice.fixed(addresses)):
        yield
