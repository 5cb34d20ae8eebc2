"""The per-worker media clock: one asyncio task paces every live call's downlink.

Ticks are on an absolute schedule, ``start + n * ptime``, so they never drift
(the sleep before each tick is recomputed from the schedule, not from the last
wake-up). Each tick calls ``tick(now)`` on every registered listener -- one call
each, no task or timer per call. After a stall of the event loop the missed
ticks are run back to back, yielding between ticks (each tick's packets have
left -- sent directly, or taken by a plain aiortc sender -- before the next tick
produces more): nothing is skipped, so the playout
accounting stays true and latency does not ratchet up (the devices' jitter
buffers absorb the short burst). Only a stall longer than ``max_catchup`` ticks
(500 ms) makes the schedule jump forward (counted as overruns).

A listener that raises is logged and unregistered; the others keep ticking.

Encoding off the loop. ``tick(now)`` may return an ``EncodeJob`` (``relay.media.downlink``):
a frame that needs a real libopus encode. The clock collects one tick's jobs and hands them,
as one batch, to its one encode thread (one executor hop per tick, not per frame); the clock
task awaits the batch while the loop serves everything else (set-ups, DTLS, uplink packets),
then, back on the loop, runs each job's ``done(payload)`` in listener order (each call has
at most one frame per tick, so per-call frame order holds). libopus is called through ctypes,
which releases the GIL, so the encodes run on the second core. Batches of at most
``inline_max`` frames would be encoded inline. An encode that
fails ends only its call (``clock_failed``). Encoders of a batch are released after it
(``job_finished``: a call that ended meanwhile has its encoder closed only then); on ``stop()``
an in-flight batch is waited for before the thread is shut down.

(The hop costs the loop ~25-40 us per batch, one inline encode ~115 us: ``INLINE_MAX_FRAMES``
is 0.) ``metrics.clock_tick_blocked`` samples, per tick, how long the loop was blocked by the tick
(the on-loop parts plus any inline encode; not the time the encode thread works);
``metrics.clock_encode_batch`` how long each batch took, handed over -> back on the loop.

Load-adaptive complexity (``opus_adaptive``). With a ``ComplexityController``
(``relay.media.adapt``), each tick reports its load -- how far into its period it finished,
``(finished - scheduled) / ptime`` -- and the controller may step the worker's downlink Opus
complexity down or up. The level is applied on the loop to each job's encoder just before its
batch is handed over (the thread is idle then: the clock awaits every batch), so no encoder's
complexity changes under an encode; new calls start at the current level (``complexity_for``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from relay.call.metrics import MediaMetrics
from relay.media.adapt import ComplexityController
from relay.media.downlink import EncodeJob, encode_jobs

log = logging.getLogger("relay.media")


# batches of at most this many frames are encoded on the loop. Measured (uvloop, complexity 4): the
# hop costs the loop ~25-40 us of CPU per batch, one inline encode ~115 us, so even one frame goes
# to the thread; 0 = always hop (a knob for tests and for a machine with one core)
INLINE_MAX_FRAMES = 0


class ClockListener(Protocol):
    def tick(self, now: float) -> EncodeJob | None: ...

    def clock_failed(self, exc: BaseException) -> None: ...


class MediaClock:
    def __init__(self, metrics: MediaMetrics, *, ptime_ms: int = 20, max_catchup: int = 25,
                 inline_max: int = INLINE_MAX_FRAMES, adapt: ComplexityController | None = None) -> None:
        self.ptime_s = ptime_ms / 1000
        # the worker's complexity and load meter (a one-level ladder with opus_adaptive off); None: no
        # worker-wide complexity, each encoder keeps its own, no load gauge (bare clocks in tests)
        self._adapt = adapt
        self.opus_complexity = adapt.complexity if adapt is not None else None
        metrics.opus_complexity = self.opus_complexity if self.opus_complexity is not None else -1
        self._metrics = metrics
        self._max_catchup = max_catchup
        self._inline_max = inline_max
        self._listeners: dict[int, ClockListener] = {}
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.ticks = 0
        self.encode_batches = 0  # batches the encode thread ran
        self.idle_pauses = 0  # times the clock stopped ticking because no call was registered
        self._idle: asyncio.Event | None = None  # set by register() while the clock waits for a call

    def register(self, listener: ClockListener) -> None:
        self._listeners[id(listener)] = listener
        if self._idle is not None:
            self._idle.set()

    def unregister(self, listener: ClockListener) -> None:
        self._listeners.pop(id(listener), None)

    def complexity_for(self, configured: int) -> int:
        """The complexity a new call's encoder starts at: the worker's current level, if it has one."""
        return configured if self.opus_complexity is None else self.opus_complexity

    @property
    def adaptive(self) -> ComplexityController | None:
        return self._adapt

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    def start(self) -> None:
        if self._task is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-encode")
            self._task = asyncio.get_running_loop().create_task(self._run(), name="relay-media-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)  # idle: the task waited for its last batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        late = False  # the previous tick ran behind schedule (a stall being caught up)
        try:
            while True:
                if not self._listeners:
                    # no call: no ticks (an idle worker cost ~0.8 % of a core ticking 50 times a second
                    # for nobody); the schedule restarts from the first call's registration
                    self.idle_pauses += 1
                    self._idle = asyncio.Event()
                    try:
                        await self._idle.wait()
                    finally:
                        self._idle = None
                    start, n, late = loop.time(), 0, False
                    if self._adapt is not None:
                        self._adapt.reset_window()
                n += 1
                target = start + n * self.ptime_s
                # always yield, also when catching up: the loop serves I/O between ticks, and a plain
                # aiortc sender takes each tick's packet before the next (its queue is bounded)
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
                started = time.perf_counter()
                jobs = self._tick(now)
                level = self.opus_complexity
                if jobs and level is not None:
                    for _, _, job in jobs:  # the thread is idle: the last batch is back
                        if job.encoder.complexity != level:
                            job.encoder.set_complexity(level)
                encode_s = 0.0  # the tick's wait for its encode batch
                if not jobs:
                    blocked = time.perf_counter() - started
                elif len(jobs) <= self._inline_max or self._executor is None:
                    handed = time.perf_counter()
                    encode_jobs([job for _, _, job in jobs])
                    encode_s = time.perf_counter() - handed
                    self._finish(jobs)
                    blocked = time.perf_counter() - started
                else:
                    handed = time.perf_counter()
                    blocked = handed - started
                    await self._encode_off_loop(jobs)
                    resumed = time.perf_counter()
                    encode_s = resumed - handed
                    self._metrics.clock_encode_batch.add(encode_s)
                    self._finish(jobs)
                    blocked += time.perf_counter() - resumed
                self._metrics.clock_tick_blocked.add(blocked)
                self._observe_load((loop.time() - target) / self.ptime_s, encode_s / self.ptime_s)
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("media clock stopped unexpectedly")
            raise

    def _observe_load(self, load: float, encode_load: float) -> None:
        if self._adapt is None:
            return
        step = self._adapt.observe(load, encode_load)
        self._metrics.clock_load = self._adapt.last_load
        if step is None:
            return
        self.opus_complexity = step.after
        self._metrics.opus_complexity = step.after
        direction = "down" if step.down else "up"
        steps = self._metrics.opus_complexity_steps
        steps[direction] = steps.get(direction, 0) + 1
        log.warning("media clock %s: Opus complexity %d -> %d (ticks finished %.0f %% into their %d ms "
                    "on average over the last second, %d calls)", "overloaded" if step.down else "has room",
                    step.before, step.after, step.load * 100, round(self.ptime_s * 1000), len(self._listeners))

    def _tick(self, now: float) -> list[tuple[int, Any, EncodeJob]]:
        jobs: list[tuple[int, Any, EncodeJob]] = []
        for key, listener in list(self._listeners.items()):
            try:
                job = listener.tick(now)
            except Exception as exc:  # one broken call must not stop the others
                self._fail(key, listener, exc)
                continue
            if job is not None:
                jobs.append((key, listener, job))
        return jobs

    async def _encode_off_loop(self, jobs: list[tuple[int, Any, EncodeJob]]) -> None:
        assert self._executor is not None
        batch = [job for _, _, job in jobs]
        future = self._executor.submit(encode_jobs, batch)
        waited = asyncio.wrap_future(future)
        try:
            await asyncio.shield(waited)
            self.encode_batches += 1
        except asyncio.CancelledError:
            # stop() while the thread encodes: let it finish (one batch, a few ms; the loop keeps
            # running) so no encoder of the batch is freed under it, release them, and end
            if not future.cancel():
                while not waited.done():
                    try:
                        await asyncio.shield(waited)
                    except asyncio.CancelledError:
                        continue
                self.encode_batches += 1
            for job in batch:
                job.encoder.job_finished()
            raise

    def _finish(self, jobs: list[tuple[int, Any, EncodeJob]]) -> None:
        for key, listener, job in jobs:
            job.encoder.job_finished()
            if key not in self._listeners:
                continue  # the call ended while its frame was encoded: nothing to send
            try:
                if job.error is not None:
                    raise job.error
                assert job.payload is not None
                job.done(job.payload)
            except Exception as exc:
                self._fail(key, listener, exc)

    def _fail(self, key: int, listener: Any, exc: Exception) -> None:
        log.error("call failed on the media clock; ending it", exc_info=exc)
        self._listeners.pop(key, None)
        listener.clock_failed(exc)
