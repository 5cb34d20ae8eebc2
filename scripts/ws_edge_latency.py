"""Loopback latency through relay's WebSocket edge vs. straight to the local assistant (relay-loopback).

    python scripts/ws_edge_latency.py

One process, one event loop (client, relay, local assistant), 127.0.0.1: 150 appends of 40 ms
pcm16, each tagged with a sequence number, timed until the same bytes come back as a delta.
"""
import asyncio
import base64
import statistics
import tempfile
import time

import aiohttp
import orjson
from aiohttp.test_utils import TestServer

from relay.settings import load_settings
from relay.web.app import create_app
from relay.web.realtime import MEDIA

N, CHUNK = 150, 1920  # 40 ms chunks

async def run(ws, label):
    # wait for session.updated (relay) or session.created (direct)
    lat = []
    async def reader():
        n = 0
        while n < N:
            m = await ws.receive()
            ev = orjson.loads(m.data)
            if ev["type"] in ("response.audio.delta",):
                seq = int.from_bytes(base64.b64decode(ev["delta"])[:4], "little")
                lat.append((time.perf_counter() - sent[seq]) * 1000)
                n += 1
    sent = {}
    r = asyncio.create_task(reader())
    for i in range(N):
        pcm = i.to_bytes(4, "little") + bytes(CHUNK - 4)
        sent[i] = time.perf_counter()
        await ws.send_str(orjson.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}).decode())
        await asyncio.sleep(0.04)
    await asyncio.wait_for(r, 10)
    lat.sort()
    print(f"{label}: n={len(lat)} p50={statistics.median(lat):.2f} ms p95={lat[int(len(lat)*0.95)]:.2f} ms max={lat[-1]:.2f} ms")

async def main():
    d = tempfile.mkdtemp()
    s = load_settings(environ={}, data_dir=d, admin_token="x"*32, log_level="warning", log_format="text")
    server = TestServer(create_app(s), host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    H = {"Authorization": "Bearer " + "x"*32}
    async with http.post(server.make_url("/admin/v1/assistants"), json={"name": "L", "model": "relay-loopback"}, headers=H) as r:
        aid = (await r.json())["id"]
    async with http.post(server.make_url("/admin/v1/tokens"), json={"assistant_id": aid}, headers=H) as r:
        tok = (await r.json())["token"]
    local = server.app[MEDIA].local_assistant_url
    for rnd in range(2):
        ws = await http.ws_connect(local + "?model=relay-loopback", headers={"OpenAI-Beta": "realtime=v1"})
        await ws.receive()
        await run(ws, f"direct to local assistant (round {rnd})")
        await ws.close()
        ws = await http.ws_connect(server.make_url("/v1/realtime"), headers={"Authorization": "Bearer " + tok})
        while orjson.loads((await ws.receive()).data)["type"] != "session.updated":
            pass
        await run(ws, f"through relay's WebSocket edge (round {rnd})")
        await ws.close()
    await http.close()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
