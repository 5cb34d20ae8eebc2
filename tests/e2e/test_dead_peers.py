"""Dead peers are found within seconds of their last sign of life, the device is told, the call
records the true end reason and is billed to the last sign of life (issue: a vanished device was
held 30-33 s as ``device_closed`` and billed the dead time; a frozen upstream gave 44.8 s of
silence; a stalled upstream handshake 10 s)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web
from aiortc.mediastreams import MediaStreamTrack


async def wait_until(predicate, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.02)


def codes(events: list[dict]) -> list[str]:
    return [e["error"]["code"] for e in events if e.get("type") == "error"]


def vanish(device) -> None:
    """The device stops sending anything (unplugged): every UDP socket of its ICE agent goes mute."""
    for transceiver in device.pc.getTransceivers():
        connection = transceiver.sender.transport.transport._connection  # aioice Connection
        for protocol in connection._protocols:
            protocol.transport.sendto = lambda *args, **kwargs: None


class Muted(MediaStreamTrack):
    """A muted microphone: no RTP at all (aiortc still sends its RTCP sender reports)."""

    kind = "audio"

    async def recv(self):
        await asyncio.Future()


async def test_vanished_device_is_lost_within_the_timeout_and_billed_to_its_last_packet(relay_factory):
    timeout_s = 1.0
    relay = await relay_factory(device_liveness_timeout_s=timeout_s)
    device = relay.device()
    await device.connect()
    call = relay.plane.registry.calls()[0]
    await asyncio.sleep(0.5)
    vanished_at = time.time()
    vanish(device)
    # before: aiortc's ICE consent noticed after ~30 s and the call ended device_closed
    await asyncio.wait_for(call.wait_closed(), 4 * timeout_s + 2)
    assert call.end_reason == "device_lost"
    assert relay.plane.metrics.calls_ended_by_reason.get("device_lost") == 1
    # billed to the last packet seen (looked at every timeout/8), not to when the loss was noticed
    assert call.usage.started_at < call.usage.ended_at <= vanished_at + timeout_s / 8 + 0.25
    print(f"\nbilled {call.usage.ended_at - vanished_at:+.3f} s from the moment the device vanished")
    await device.hangup()
    await relay.wait_idle()


async def test_muted_device_is_not_lost(relay_factory):
    """RTCP alone (no RTP) is a sign of life."""
    relay = await relay_factory(device_liveness_timeout_s=2.5)
    device = relay.device()
    await device.connect(audio_source=Muted())
    call = relay.plane.registry.calls()[0]
    rtp_before = relay.plane.metrics.rtp_in_packets
    await asyncio.sleep(6.0)
    assert relay.plane.metrics.rtp_in_packets == rtp_before  # really muted: no RTP reached relay
    assert call.end_reason is None and device.connected
    await device.hangup()
    await relay.wait_idle()


async def start_upstream(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/v1/realtime", handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1/realtime"


async def test_frozen_upstream_ends_the_call_upstream_timeout(relay_factory):
    frozen = asyncio.Event()

    async def freezing_upstream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # and never reads: relay's pings go unanswered
        await ws.prepare(request)
        await ws.send_json({"type": "session.created", "session": {"id": "s"}})
        frozen.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        return ws

    runner, url = await start_upstream(freezing_upstream)
    try:
        relay = await relay_factory(upstream_url=url, upstream_provider="compatible", upstream_heartbeat_s=1.0)
        events: list[dict] = []
        device = relay.device()
        await device.connect(on_event=events.append)
        call = relay.plane.registry.calls()[0]
        await asyncio.wait_for(frozen.wait(), 10)
        # before: 30 s heartbeat + 15 s pong wait
        await asyncio.wait_for(call.wait_closed(), 6)
        assert call.end_reason == "upstream_timeout"
        await wait_until(lambda: "upstream_timeout" in codes(events), 5)
        await device.hangup()
        await relay.wait_idle()
    finally:
        await runner.cleanup()


async def test_stalled_upstream_handshake_is_announced_and_retried_to_the_connect_timeout(relay_factory):
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads the upgrade request, never answers it

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        relay = await relay_factory(upstream_url=f"ws://127.0.0.1:{port}/v1/realtime", upstream_provider="compatible",
                                    upstream_connect_timeout_s=3.0, upstream_slow_notice_s=0.5)
        events: list[dict] = []
        device = relay.device()
        await device.connect(on_event=events.append)
        call = relay.plane.registry.calls()[0]
        await wait_until(lambda: "upstream_slow" in codes(events), 5)
        assert call.end_reason is None  # still trying
        await asyncio.wait_for(call.wait_closed(), 10)
        assert call.end_reason == "upstream_unavailable"
        await wait_until(lambda: "upstream_unavailable" in codes(events), 5)
        assert codes(events).index("upstream_slow") < codes(events).index("upstream_unavailable")
        await device.hangup()
        await relay.wait_idle()
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_stalled_event_loop_is_not_taken_for_a_lost_device(relay_factory):
    """After the worker's loop stalls past the timeout, datagrams still wait in aiortc's queues: the
    device is not declared lost for it."""
    relay = await relay_factory(device_liveness_timeout_s=2.5)
    device = relay.device()
    await device.connect(audio_source=Muted())  # RTCP only: counted when aiortc's DTLS task runs
    call = relay.plane.registry.calls()[0]
    await asyncio.sleep(1.0)
    time.sleep(3.0)  # noqa: ASYNC251 -- the stall under test: the whole loop (relay's and the device's) blocks
    await asyncio.sleep(2.0)
    assert call.end_reason is None and device.connected
    await device.hangup()
    await relay.wait_idle()
