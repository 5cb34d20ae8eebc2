"""What a loaded relay worker does to its event loop, for the set-up microbenchmarks.

``busy(stop, busy_ms)``: every 1 ms a callback holds the loop (and the GIL) for ``busy_ms / 5``
(packet callbacks), every 20 ms one holds it for ``busy_ms`` (the media clock's batch).
"""

from __future__ import annotations

import asyncio
import time


def burn(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


async def busy(stop: asyncio.Event, busy_ms: float) -> None:
    loop = asyncio.get_running_loop()
    n = 0
    while not stop.is_set():
        await asyncio.sleep(0.001)
        n += 1
        loop.call_soon(burn, busy_ms / 5)
        if n % 20 == 0:
            loop.call_soon(burn, busy_ms)
