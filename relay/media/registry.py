"""The per-worker registry of live calls: admission limit, lookup, drain on shutdown."""

from __future__ import annotations

import asyncio
import logging

from relay.media.call import Call

log = logging.getLogger("relay.media")


class CallLimitReached(Exception):
    """The worker already carries ``max_calls`` calls."""


class CallRegistry:
    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self._calls: dict[str, Call] = {}
        self._pending = 0  # admitted, still answering
        self.draining = False

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._calls

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def calls(self) -> list[Call]:
        return list(self._calls.values())

    def admit(self) -> None:
        """Reserve a slot before answering; pair with ``add`` or ``release``."""
        if self.draining or len(self._calls) + self._pending >= self.max_calls:
            raise CallLimitReached
        self._pending += 1

    def release(self) -> None:
        self._pending -= 1

    def add(self, call: Call) -> None:
        """Register an answered call (turns its reservation into a live call)."""
        self._pending -= 1
        self._calls[call.id] = call

    def remove(self, call: Call) -> None:
        self._calls.pop(call.id, None)

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
