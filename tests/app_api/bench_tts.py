"""Measure what TTS load does to the serving event loop, and the engines' speed (not a test).

    python -m tests.app_api.bench_tts [--seconds 10] [--concurrency 6] [--workers 1]

Prints JSON: event-loop lag percentiles (a 20 ms ticker, like a media clock) with
no load and while ``concurrency`` clients hammer the TTS endpoint; TTS throughput
(seconds of audio per wall second), 503 TTS_BUSY answers; espeak-ng's real-time
factor in one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from relay.app_api import admin
from relay.settings import load_settings
from relay.store import clients as clients_repo
from relay.store import workspaces as workspaces_repo
from relay.store.db import Database
from relay.tts import jobs
from relay.web.app import create_app
from relay.web.app_api.common import SERVICES

TEXT = ("The little fox walked down to the river every morning to drink the cold water and to watch the fish. "
        * 6)


async def ticker(stop: asyncio.Event, lags_ms: list[float], period_s: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while not stop.is_set():
        n += 1
        target = start + n * period_s
        await asyncio.sleep(max(0.0, target - loop.time()))
        lags_ms.append((loop.time() - target) * 1000)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2) if s else 0.0


async def main(seconds: float, concurrency: int, workers: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-tts-"))
    settings = load_settings(environ={}, data_dir=str(tmp), tts_workers=workers, tts_queue_limit=4,
                             log_level="warning", log_format="text")
    db = await Database.connect(f"sqlite:///{tmp / 'relay.db'}")
    await db.migrate()
    client = TestClient(TestServer(create_app(settings, db=db), host="127.0.0.1"))
    await client.start_server()
    try:
        ws, key = await workspaces_repo.create(db, "bench", with_key=True)
        devices = [await clients_repo.create(db, ws.id) for _ in range(concurrency)]  # one device per client
        all_headers = [{"X-Workspace-Key": key or "", "X-Client-Id": d.id, "X-Client-Secret": "b" * 40}
                       for d in devices]
        headers = all_headers[0]
        voice = await admin.create_workspace_voice(db, client.server.app[SERVICES], ws.id, name="v",
                                                   design_prompt="calm narrator")
        url = f"/v1/app/text-to-speech/{voice.id}/with-timestamps"
        await client.post(url, headers=headers, json={"text": "warm up"})

        idle: list[float] = []
        stop = asyncio.Event()
        t = asyncio.create_task(ticker(stop, idle))
        await asyncio.sleep(min(5.0, seconds))
        stop.set()
        await t

        loaded: list[float] = []
        stop = asyncio.Event()
        stats = {"ok": 0, "busy": 0, "other": 0, "audio_s": 0.0}

        async def hammer(headers: dict[str, str]) -> None:
            while not stop.is_set():
                resp = await client.post(url, headers=headers, json={"text": TEXT, "output_format": "mp3"})
                body = await resp.json()
                if resp.status == 200:
                    stats["ok"] += 1
                    stats["audio_s"] += body["duration_seconds"]
                elif resp.status in (429, 503):
                    stats["busy"] += 1
                    await asyncio.sleep(0.2)
                else:
                    stats["other"] += 1

        t0 = time.perf_counter()
        t = asyncio.create_task(ticker(stop, loaded))
        clients = [asyncio.create_task(hammer(h)) for h in all_headers]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(t, *clients)
        wall = time.perf_counter() - t0
    finally:
        await client.close()
        await db.close()

    c0 = time.process_time()
    pcm, rate, _ = jobs.speak(TEXT, {})
    cpu = time.process_time() - c0
    return {
        "workers": workers, "concurrency": concurrency, "seconds": seconds, "text_chars": len(TEXT),
        "loop_lag_ms_idle": {"p50": pct(idle, 50), "p99": pct(idle, 99), "max": pct(idle, 100)},
        "loop_lag_ms_under_tts": {"p50": pct(loaded, 50), "p99": pct(loaded, 99), "max": pct(loaded, 100)},
        "tts_ok": stats["ok"], "tts_busy_503_429": stats["busy"], "tts_other": stats["other"],
        "audio_s_per_wall_s": round(stats["audio_s"] / wall, 1),
        "espeak_realtime_factor": round((len(pcm) / 2 / rate) / cpu, 1),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.seconds, a.concurrency, a.workers)), indent=2))
