"""The media clock: one task ticks every listener; a failing listener is isolated."""

from __future__ import annotations

import asyncio

from relay.call.metrics import MediaMetrics
from relay.media.clock import MediaClock


class Counter:
    def __init__(self, fail_at: int | None = None) -> None:
        self.ticks: list[float] = []
        self.fail_at = fail_at
        self.failed: BaseException | None = None
        self.enough = asyncio.Event()

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        if len(self.ticks) >= 10:
            self.enough.set()
        if self.fail_at is not None and len(self.ticks) == self.fail_at:
            raise RuntimeError("boom")

    def clock_failed(self, exc: BaseException) -> None:
        self.failed = exc


async def test_ticks_every_listener_on_one_task_and_isolates_failures():
    clock = MediaClock(MediaMetrics(), ptime_ms=5)
    good, bad = Counter(), Counter(fail_at=3)
    clock.register(good)
    clock.register(bad)
    tasks_before = len(asyncio.all_tasks())
    clock.start()
    assert len(asyncio.all_tasks()) == tasks_before + 1  # one task for all listeners
    await asyncio.wait_for(good.enough.wait(), 5)
    await clock.stop()
    assert len(bad.ticks) == 3 and isinstance(bad.failed, RuntimeError)
    assert clock.listener_count == 1
    assert good.ticks == sorted(good.ticks)
    assert len(asyncio.all_tasks()) == tasks_before


async def test_schedule_is_absolute_and_skips_ahead_after_a_stall():
    metrics = MediaMetrics()
    clock = MediaClock(metrics, ptime_ms=5, max_catchup=2)
    listener = Counter()
    clock.register(listener)
    clock.start()
    await asyncio.sleep(0)
    import time
    time.sleep(0.1)  # noqa: ASYNC251 -- stall the loop on purpose, for 20 ticks
    await asyncio.wait_for(listener.enough.wait(), 5)
    await clock.stop()
    # a stall longer than max_catchup ticks is skipped, not replayed as a burst
    assert metrics.clock_overruns >= 10
    assert clock.ticks < 20 + 10


async def test_an_idle_clock_does_not_tick_and_wakes_for_the_next_call():
    clock = MediaClock(MediaMetrics(), ptime_ms=5)
    clock.start()
    await asyncio.sleep(0.1)  # 20 periods with no call
    assert clock.ticks == 0 and clock.idle_pauses == 1
    first = Counter()
    clock.register(first)
    await asyncio.wait_for(first.enough.wait(), 5)
    assert clock.ticks >= 10
    clock.unregister(first)
    await asyncio.sleep(0.05)
    ticks = clock.ticks
    await asyncio.sleep(0.1)
    assert clock.ticks == ticks and clock.idle_pauses == 2  # paused again once the last call left
    second = Counter()
    woke = asyncio.get_running_loop().time()
    clock.register(second)
    await asyncio.wait_for(second.enough.wait(), 5)
    # the schedule restarts from the wake-up: the 10 ticks are paced one period apart, not a burst
    # catching up the 0.15 s (30 periods) the clock sat idle
    assert second.ticks[9] - woke >= 9 * 0.005
    await clock.stop()
