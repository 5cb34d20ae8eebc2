"""CPU per uplink append on the upstream WebSocket: the old path against relay's.

old: dict -> orjson -> str -> asyncio.Queue -> a writer task -> ``send_str`` (relay before the
issue #16 follow-up); relay: ``append_json`` -> ``UpstreamClient.send_json``, written inside the
call. One send per loop turn (as the uplink sends them), against a local aiohttp server that reads
(its CPU is in the figure too: one process). ``python -m bench.upstream_send [--sends N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import time

import aiohttp
import orjson
from aiohttp import web

from relay.bridge import append_json
from relay.call.upstream import UpstreamClient, connect_request
from relay.models import Assistant

CHUNK = os.urandom(1920)  # 40 ms of PCM16 at 24 kHz


async def _sink(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _ in ws:
        pass
    return ws


async def _old(ws: aiohttp.ClientWebSocketResponse, sends: int) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=512)

    async def writer() -> None:
        while True:
            await ws.send_str(await queue.get())
            queue.task_done()

    task = asyncio.create_task(writer())
    for _ in range(sends):
        event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(CHUNK).decode("ascii")}
        queue.put_nowait(orjson.dumps(event).decode())
        await asyncio.sleep(0)
    await queue.join()
    task.cancel()


async def _new(client: UpstreamClient, sends: int) -> None:
    for _ in range(sends):
        client.send_json(append_json(CHUNK))
        await asyncio.sleep(0)


async def main(sends: int, rounds: int) -> dict[str, list[float]]:
    app = web.Application()
    app.router.add_get("/", _sink)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    out: dict[str, list[float]] = {"old": [], "relay": []}
    try:
        async with aiohttp.ClientSession() as http:
            for label in ("old", "relay") * rounds:
                client = UpstreamClient(http, connect_request(Assistant(
                    id="a", name="n", provider="compatible", upstream_url=f"ws://127.0.0.1:{port}/")))
                await client.connect()
                t0 = time.process_time()
                if label == "old":
                    await _old(client._ws, sends)  # type: ignore[arg-type]
                else:
                    await _new(client, sends)
                out[label].append(1e6 * (time.process_time() - t0) / sends)
                await client.close()
    finally:
        await runner.cleanup()
    return out


def cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sends", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    import uvloop

    result = uvloop.run(main(args.sends, args.rounds))
    for label, values in result.items():
        print(f"{label:6s} us of CPU per append: " + ", ".join(f"{v:.1f}" for v in values))


if __name__ == "__main__":
    cli()
