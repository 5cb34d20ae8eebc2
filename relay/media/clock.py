"""The per-worker media clock: one asyncio task paces every live call's downlink.

Ticks are on an absolute schedule, ``start + n * ptime``, so they never drift
(the sleep before each tick is recomputed from the schedule, not from the last
wake-up). Each tick calls ``tick(now)`` on every registered listener -- one call
each, no task or timer per call. After a stall of the event loop the missed
ticks are run back to back, yielding between ticks so each call's sender takes
its packet before the next one comes: nothing is skipped, so the playout
accounting stays true and latency does not ratchet up (the devices' jitter
buffers absorb the short burst). Only a stall longer than ``max_catchup`` ticks
(500 ms) makes the schedule jump forward (counted as overruns).

A listener that raises is logged and unregistered; the others keep ticking.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from relay.media.metrics import MediaMetrics

log = logging.getLogger("relay.media")


class ClockListener(Protocol):
    def tick(self, now: float) -> None: ...

    def clock_failed(self, exc: BaseException) -> None: ...


class MediaClock:
    def __init__(self, metrics: MediaMetrics, *, ptime_ms: int = 20, max_catchup: int = 25) -> None:
        self.ptime_s = ptime_ms / 1000
        self._metrics = metrics
        self._max_catchup = max_catchup
        self._listeners: dict[int, ClockListener] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0

    def register(self, listener: ClockListener) -> None:
        self._listeners[id(listener)] = listener

    def unregister(self, listener: ClockListener) -> None:
        self._listeners.pop(id(listener), None)

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="relay-media-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        late = False  # the previous tick ran behind schedule (a stall being caught up)
        try:
            while True:
                n += 1
                target = start + n * self.ptime_s
                # always yield, also when catching up: the senders consume each tick's packets
                # before the next tick produces more (a burst would overflow their bounded queues)
                await asyncio.sleep(max(0.0, target - loop.time()))
                now = loop.time()
                behind = int((now - target) / self.ptime_s)
                if behind:
                    self._metrics.clock_late_ticks += 1
                    if not late:
                        self._metrics.clock_stalls += 1
                late = behind > 0
                if behind > self._max_catchup:
                    self._metrics.clock_overruns += behind
                    n += behind
                self.ticks += 1
                self._tick(now)
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("media clock stopped unexpectedly")
            raise

    def _tick(self, now: float) -> None:
        for key, listener in list(self._listeners.items()):
            try:
                listener.tick(now)
            except Exception as exc:  # one broken call must not stop the others
                log.exception("call failed on the media clock; ending it")
                self._listeners.pop(key, None)
                listener.clock_failed(exc)
