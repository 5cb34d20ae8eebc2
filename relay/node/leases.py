"""The worker's side of the fleet's live-call registry (``relay.store.live_calls``).

``FleetCalls`` admits a call in the store (the caps, fleet-wide: one round trip on the set-up
path), releases it when it ends, and every ``call_lease_s / 3`` renews the lease of every call this
worker holds in one statement, ending the calls an operator asked to end (``request_end`` on any
node). A worker that dies stops renewing: its calls stop counting once their lease has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from relay.store import live_calls

log = logging.getLogger("relay.node")

END_REASON = "call_ended_by_operator"


class FleetCalls:
    def __init__(self, db: Any, *, node: str, worker: int, lease_s: float, client_cap: int,
                 workspace_cap: int) -> None:
        self.db = db
        self.node = node or socket.gethostname()
        self.worker = worker
        self.holder = f"{self.node}:{os.getpid()}"
        self.lease_s = lease_s
        self.client_cap = client_cap
        self.workspace_cap = workspace_cap
        self._task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()

    async def admit(self, call_id: str, device: Any, edge: str = "webrtc") -> None:
        """``live_calls.CapReached`` when the client or its workspace is at its cap."""
        await live_calls.admit(self.db, call_id=call_id, client_id=device.client_id,
                               workspace_id=getattr(device, "workspace_id", None), node=self.node,
                               worker=self.worker, holder=self.holder, lease_s=self.lease_s,
                               client_cap=self.client_cap, workspace_cap=self.workspace_cap, edge=edge)

    def release_soon(self, call_id: str) -> None:
        """The call ended (or never started): delete its row in the background."""
        task = asyncio.get_running_loop().create_task(self._release(call_id))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, call_id: str) -> None:
        try:
            await live_calls.release(self.db, call_id)
        except Exception as exc:  # the lease expires it anyway
            log.warning("could not release live call %s: %s", call_id, type(exc).__name__)

    def start(self, end_call: Callable[[str], None]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._renew_loop(end_call), name="relay-call-leases")

    async def _renew_loop(self, end_call: Callable[[str], None]) -> None:
        every_s = self.lease_s / 3
        purge_every = 20
        n = 0
        while True:
            await asyncio.sleep(every_s)
            try:
                for call_id in await live_calls.renew(self.db, self.holder, self.lease_s):
                    end_call(call_id)
                n += 1
                if n % purge_every == 0:
                    await live_calls.purge_expired(self.db, grace_s=max(60.0, self.lease_s))
            except Exception as exc:  # retried at the next renewal; the lease covers two misses
                log.warning("live-call lease renewal failed: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
