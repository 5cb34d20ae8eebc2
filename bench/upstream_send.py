"""CPU per event on the upstream WebSocket, both ways (one process: the local server's CPU is in it).

Send, per uplink append: ``old`` is dict -> orjson -> str -> asyncio.Queue -> a writer task ->
``send_str`` (relay before the issue #16 follow-up); ``relay`` is ``append_json`` ->
``UpstreamClient.send_json``, written inside the call. One send per loop turn (as the uplink sends
them), against a local aiohttp server that reads.
Receive, per 40 ms audio delta from a local server: ``aiohttp`` (iterating the socket),
``events`` (+ ``UpstreamClient.events``: parse, checks), ``core`` (+ ``CallCore.on_upstream_event``
and the two 20 ms frames the media clock pulls for it).
``python -m bench.upstream_send [--sends N] [--rounds R]``.
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

from relay.bridge import CallCore, append_json
from relay.call.upstream import UpstreamClient, connect_request
from relay.models import Assistant

CHUNK = os.urandom(1920)  # 40 ms of PCM16 at 24 kHz
SENDS = web.AppKey("sends", int)


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


DELTA = orjson.dumps({"type": "response.audio.delta", "event_id": "event_1", "response_id": "resp_1",
                      "item_id": "item_1", "output_index": 0, "content_index": 0,
                      "delta": base64.b64encode(CHUNK).decode()}).decode()


async def _source(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    for _ in range(request.app[SENDS]):
        await ws.send_str(DELTA)
        await asyncio.sleep(0)
    await ws.close()
    return ws


async def _receive(client: UpstreamClient, mode: str) -> int:
    assistant = Assistant(id="a", name="n", provider="local", model="relay-echo")
    core = CallCore(assistant, now=0.0)
    core.on_upstream_opened(0.0)
    core.drain_actions()
    count = 0
    if mode == "aiohttp":
        async for _ in client._ws:  # type: ignore[union-attr]
            count += 1
        return count
    async for event in client.events():
        if mode == "core":
            core.on_upstream_event(event, 0.0)
            core.drain_actions()
            core.pull_frame(0.0)
            core.pull_frame(0.0)
        count += 1
    return count


async def main(sends: int, rounds: int) -> dict[str, list[float]]:
    app = web.Application()
    app.router.add_get("/", _sink)
    app.router.add_get("/source", _source)
    app[SENDS] = sends
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    out: dict[str, list[float]] = {"send old": [], "send relay": [], "recv aiohttp": [], "recv events": [],
                                   "recv core": []}
    try:
        async with aiohttp.ClientSession() as http:
            for label in ("send old", "send relay", "recv aiohttp", "recv events", "recv core") * rounds:
                path = "/source" if label.startswith("recv") else "/"
                client = UpstreamClient(http, connect_request(Assistant(
                    id="a", name="n", provider="compatible", upstream_url=f"ws://127.0.0.1:{port}{path}")))
                await client.connect()
                t0 = time.process_time()
                count = sends
                if label == "send old":
                    await _old(client._ws, sends)  # type: ignore[arg-type]
                elif label == "send relay":
                    await _new(client, sends)
                else:
                    count = await _receive(client, label.split()[1])
                    if count != sends:
                        raise RuntimeError(f"{label}: {count} of {sends} deltas arrived")
                out[label].append(1e6 * (time.process_time() - t0) / max(count, 1))
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
        print(f"{label:13s} us of CPU per event: " + ", ".join(f"{v:.1f}" for v in values))


if __name__ == "__main__":
    cli()
