"""The per-worker media clock: one asyncio task paces every live call's downlink.

Ticks are on an absolute schedule, ``start + n * ptime``, so they never drift
(the sleep before each tick is recomputed from the schedule, not from the last
wake-up). Each tick calls ``tick(now)`` on every registered listener -- one call
each, no task or timer per call. If the loop was stalled for longer than
``max_catchup`` ticks the schedule jumps forward (counted as overruns) rather
than bursting a backlog of frames at the devices.

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
    def __init__(self, metrics: MediaMetrics, *, ptime_ms: int = 20, max_catchup: int = 5) -> None:
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
        try:
            while True:
                n += 1
                target = start + n * self.ptime_s
                delay = target - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = loop.time()
                behind = int((now - target) / self.ptime_s)
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
