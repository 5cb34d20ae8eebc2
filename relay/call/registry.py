"""The per-worker registry of live calls: admission limit, lookup, drain on shutdown.

Half-open calls -- answered WebRTC offers whose device has not connected yet (or offers
still being answered) -- are bounded on their own: ``max_half_open`` on the worker and
``max_half_open_per_address`` per caller address, so offers that are never connected
(each holds a slot until ``ice_connect_timeout_s``) cannot fill the worker, whatever
client ids they carry. A call stops being half-open when its device connects
(``connected``) or it ends.

The registry holds calls of both edges (``relay.media.call.Call``, ``relay.wsedge.wscall.WsCall``):
it is typed on ``LiveCall``, what it needs of a call, not on either edge's class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("relay.call")


class LiveCall(Protocol):
    """What the registry (and the worker's services around it) need of a live call, whichever its edge."""

    id: str
    device: Any  # relay.models.Device (its ``client_id``)
    end_reason: str | None

    def end_with_error(self, reason: str, message: str, type_: str = ...) -> None: ...

    async def wait_closed(self) -> None: ...

    @property
    def closed(self) -> bool: ...


class CallLimitReached(Exception):
    """The worker already carries ``max_calls`` calls (or is draining)."""


class ClientCallLimitReached(Exception):
    """This client already has ``max_calls_per_client`` live calls on this worker."""


class HalfOpenLimitReached(Exception):
    """Too many offers not connected yet: ``per_address`` says whether this address's own bound was hit."""

    def __init__(self, per_address: bool) -> None:
        super().__init__("per address" if per_address else "worker")
        self.per_address = per_address


class CallRegistry:
    def __init__(self, max_calls: int, max_calls_per_client: int = 0, *, max_half_open: int = 0,
                 max_half_open_per_address: int = 0) -> None:
        self.max_calls = max_calls
        self.max_calls_per_client = max_calls_per_client  # 0: no per-client limit
        self.max_half_open = max_half_open or max_calls  # 0: only max_calls
        self.max_half_open_per_address = max_half_open_per_address  # 0: no per-address limit
        self._calls: dict[str, LiveCall] = {}
        self._pending = 0  # admitted, still answering
        self._per_client: dict[str, int] = {}  # live + pending calls per client id
        self._half_open: dict[str, str] = {}  # call id -> address, answered but not connected
        self._half_open_pending = 0  # admitted with an address, still answering
        self._half_open_by_address: dict[str, int] = {}  # pending + half-open, per address
        self.draining = False
        # told the load (live + pending calls) after every change: the node's shared table (relay.node.state)
        self.on_load: Callable[[int], None] | None = None

    @property
    def load(self) -> int:
        """Live calls plus admitted calls still answering."""
        return len(self._calls) + self._pending

    def _changed(self) -> None:
        if self.on_load is not None:
            self.on_load(self.load)

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def get(self, call_id: str) -> LiveCall | None:
        return self._calls.get(call_id)

    def calls(self) -> list[LiveCall]:
        return list(self._calls.values())

    @property
    def half_open(self) -> int:
        """Offers being answered or answered and not connected yet (WebRTC)."""
        return len(self._half_open) + self._half_open_pending

    def admit(self, client_id: str = "", address: str | None = None) -> None:
        """Reserve a slot before answering; pair with ``add`` or ``release`` (same ``client_id`` and
        ``address``). With ``address`` (a WebRTC offer) the call counts as half-open until ``connected``."""
        if self.draining or len(self._calls) + self._pending >= self.max_calls:
            raise CallLimitReached
        if address is not None:
            if self.half_open >= self.max_half_open:
                raise HalfOpenLimitReached(per_address=False)
            if self.max_half_open_per_address and \
                    self._half_open_by_address.get(address, 0) >= self.max_half_open_per_address:
                raise HalfOpenLimitReached(per_address=True)
        if self.max_calls_per_client and self._per_client.get(client_id, 0) >= self.max_calls_per_client:
            raise ClientCallLimitReached
        self._pending += 1
        self._per_client[client_id] = self._per_client.get(client_id, 0) + 1
        if address is not None:
            self._half_open_pending += 1
            self._half_open_by_address[address] = self._half_open_by_address.get(address, 0) + 1
        self._changed()

    def release(self, client_id: str = "", address: str | None = None) -> None:
        self._pending -= 1
        self._forget_client(client_id)
        if address is not None:
            self._half_open_pending -= 1
            self._forget_address(address)
        self._changed()

    def add(self, call: LiveCall, address: str | None = None) -> None:
        """Register an answered call (turns its reservation into a live call, half-open with ``address``)."""
        self._pending -= 1
        self._calls[call.id] = call
        if address is not None:
            self._half_open_pending -= 1
            self._half_open[call.id] = address

    def connected(self, call: LiveCall) -> None:
        """The call's device connected: no longer half-open."""
        address = self._half_open.pop(call.id, None)
        if address is not None:
            self._forget_address(address)

    def remove(self, call: LiveCall) -> None:
        if self._calls.pop(call.id, None) is not None:
            self._forget_client(getattr(call.device, "client_id", ""))
            self.connected(call)
            self._changed()

    def _forget_address(self, address: str) -> None:
        left = self._half_open_by_address.get(address, 0) - 1
        if left > 0:
            self._half_open_by_address[address] = left
        else:
            self._half_open_by_address.pop(address, None)

    def _forget_client(self, client_id: str) -> None:
        left = self._per_client.get(client_id, 0) - 1
        if left > 0:
            self._per_client[client_id] = left
        else:
            self._per_client.pop(client_id, None)

    async def drain(self, timeout_s: float, reason: str = "server_shutdown") -> None:
        """Graceful drain: wait up to ``timeout_s`` for calls to end on their own, then end the rest."""
        self.draining = True
        calls = self.calls()
        if not calls:
            return
        log.info("draining %d live call(s), up to %.1f s", len(calls), timeout_s)
        waits = [asyncio.ensure_future(c.wait_closed()) for c in calls]
        try:
            done, pending = await asyncio.wait(waits, timeout=timeout_s)
        finally:
            for w in waits:
                if not w.done():
                    w.cancel()
        for call in self.calls():
            call.end_with_error(reason, "The server is shutting down; please reconnect.")
        remaining = [c for c in calls if not c.closed]
        if remaining:
            await asyncio.gather(*(c.wait_closed() for c in remaining))
