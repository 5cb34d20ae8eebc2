"""The per-worker registry of live calls: admission limit, lookup, drain on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from relay.media.call import Call

log = logging.getLogger("relay.media")


class CallLimitReached(Exception):
    """The worker already carries ``max_calls`` calls (or is draining)."""


class ClientCallLimitReached(Exception):
    """This client already has ``max_calls_per_client`` live calls on this worker."""


class CallRegistry:
    def __init__(self, max_calls: int, max_calls_per_client: int = 0) -> None:
        self.max_calls = max_calls
        self.max_calls_per_client = max_calls_per_client  # 0: no per-client limit
        self._calls: dict[str, Call] = {}
        self._pending = 0  # admitted, still answering
        self._per_client: dict[str, int] = {}  # live + pending calls per client id
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

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def calls(self) -> list[Call]:
        return list(self._calls.values())

    def admit(self, client_id: str = "") -> None:
        """Reserve a slot before answering; pair with ``add`` or ``release`` (same ``client_id``)."""
        if self.draining or len(self._calls) + self._pending >= self.max_calls:
            raise CallLimitReached
        if self.max_calls_per_client and self._per_client.get(client_id, 0) >= self.max_calls_per_client:
            raise ClientCallLimitReached
        self._pending += 1
        self._per_client[client_id] = self._per_client.get(client_id, 0) + 1
        self._changed()

    def release(self, client_id: str = "") -> None:
        self._pending -= 1
        self._forget_client(client_id)
        self._changed()

    def add(self, call: Call) -> None:
        """Register an answered call (turns its reservation into a live call)."""
        self._pending -= 1
        self._calls[call.id] = call

    def remove(self, call: Call) -> None:
        if self._calls.pop(call.id, None) is not None:
            self._forget_client(getattr(call.device, "client_id", ""))
            self._changed()

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
