"""What a hiccup does to latency: marker round trips before and after the relay is stalled.

Starts its own relay (and local assistant, loopback model), runs N devices, and after
``--at`` seconds freezes the relay ``--stalls`` times for ``--stall-ms`` each
(SIGSTOP/SIGCONT of the process it started, nothing else), then compares the
marker round trip of markers sent before the stalls with those sent after them.

    python -m bench.stall -n 5 --stalls 12 --stall-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from typing import Any

from bench import audio as bench_audio
from bench import runner, servers
from bench.device import Device

GAP_S = 0.15


async def _stall(pid: int, at_s: float, stalls: int, stall_s: float) -> tuple[float, float]:
    await asyncio.sleep(at_s)
    t0 = time.monotonic()
    for _ in range(stalls):
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(stall_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(GAP_S)
    return t0, time.monotonic()


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    devices: list[Device] = []
    original = Device.__init__

    def track(self: Device, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        devices.append(self)

    Device.__init__ = track  # type: ignore[method-assign]
    audio = bench_audio.build(None, marker_interval_ms=500)
    assistant = servers.assistant_server()
    await assistant.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-stall-") as data_dir:
            relay = servers.relay_server(
                model="relay-loopback", data_dir=data_dir, upstream_url=f"ws://127.0.0.1:{assistant.port}/v1/realtime"
            )
            await relay.start()
            try:
                stall = asyncio.ensure_future(_stall(relay.pid, a.at, a.stalls, a.stall_ms / 1000))
                report = await runner.run(
                    runner.Scenario(
                        base_url=relay.base_url, n=a.n, duration_s=a.duration, relay_pid=relay.pid, progress=False
                    ),
                    audio,
                )
                t0, t1 = await stall
            finally:
                relay.stop()
    finally:
        assistant.stop()
        Device.__init__ = original  # type: ignore[method-assign]
    before: list[float] = []
    after: list[float] = []
    for d in devices:
        m = d.matcher
        sent = sorted(m.sent[i] for i in m._matched)
        for s, rtt in zip(sent, m.rtts_ms, strict=False):
            if s < t0 - 0.5:
                before.append(rtt)
            elif s > t1 + 0.5:
                after.append(rtt)
    return {
        "stalls": a.stalls,
        "stall_ms": a.stall_ms,
        "n": a.n,
        "marker_p50_before_ms": round(statistics.median(before), 1) if before else None,
        "marker_p50_after_ms": round(statistics.median(after), 1) if after else None,
        "markers_before": len(before),
        "markers_after": len(after),
        "frames_missing": report["frames"]["missing"],
        "markers_lost": report["markers"]["lost"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.stall", description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--duration", type=float, default=14.0)
    ap.add_argument("--at", type=float, default=6.0, help="seconds after the start of the run")
    ap.add_argument("--stalls", type=int, default=12)
    ap.add_argument("--stall-ms", type=int, default=100)
    a = ap.parse_args()
    if not (1 <= a.n <= 100 and 0 < a.stall_ms <= 2000 and 0 < a.stalls <= 100):
        ap.error("n 1..100, stall-ms 1..2000, stalls 1..100")
    print(json.dumps(asyncio.run(main_async(a))))


if __name__ == "__main__":
    main()
