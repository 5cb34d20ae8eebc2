"""A bounded pool of worker processes for TTS CPU work, with admission control.

Synthesis, decoding uploads, MP3 encoding and speech recognition are CPU
bound. They run in separate **processes** (``spawn``), never on the event loop
and never in a thread of the serving process, so they cannot hold the GIL while
a live call's audio is being paced. Each worker process holds its own
libespeak-ng (which is not thread-safe); a worker runs one job at a time.

Admission: at most ``workers + queue_limit`` requests may hold a slot at once;
the next one is refused at once with ``TtsBusy`` (answered 503 ``TTS_BUSY``)
instead of queueing without bound. A request runs its jobs one after another,
so the executor never holds more than one job per admitted request.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from typing import Any, TypeVar

log = logging.getLogger("relay.tts")
T = TypeVar("T")


class TtsBusy(RuntimeError):
    """Every TTS slot is taken."""


class WorkerCrashed(RuntimeError):
    """A worker process died while running a job (the pool is rebuilt)."""


class WorkerPool:
    def __init__(self, workers: int, queue_limit: int) -> None:
        if workers < 1 or queue_limit < 0:
            raise ValueError("workers must be >= 1 and queue_limit >= 0")
        self.workers = workers
        self.capacity = workers + queue_limit
        self._admitted = 0
        self.rejected = 0  # requests refused with TtsBusy (GET /metrics)
        self._executor: ProcessPoolExecutor | None = None

    @property
    def admitted(self) -> int:
        return self._admitted

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(max_workers=self.workers,
                                                 mp_context=multiprocessing.get_context("spawn"))
        return self._executor

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[WorkerPool]:
        """Hold one request slot for the block, or raise ``TtsBusy``."""
        if self._admitted >= self.capacity:
            self.rejected += 1
            raise TtsBusy(f"all {self.capacity} TTS slots are busy")
        self._admitted += 1
        try:
            yield self
        finally:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker process (call inside ``admit()``)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool(), fn, *args)
        except BrokenProcessPool:
            log.error("a TTS worker process died; restarting the pool")
            broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            raise WorkerCrashed("TTS worker process died") from None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
