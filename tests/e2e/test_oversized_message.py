"""A device ignoring ``a=max-message-size``: its oversized data-channel message is refused while
SCTP reassembles it, and no other call on the worker suffers (issue: one 16 MB message cut every
call's downlink from 50 to 9-16 packets/s for ~28 s)."""

from __future__ import annotations

import asyncio
import re

from relay.web import keys

MB = 1 << 20


def too_large(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("type") == "error" and e["error"].get("code") == "message_too_large"]


async def packets_during(device, coro_or_wait, loop) -> tuple[int, float]:
    """Packets the device received while ``coro_or_wait`` ran, and the loop time it took."""
    before, t0 = device.receiver.stats.packets, loop.time()
    await coro_or_wait
    return device.receiver.stats.packets - before, loop.time() - t0


async def wait_for(predicate, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 -- polling state that has no event
            await asyncio.sleep(0.05)


async def test_a_16_mb_message_is_refused_early_and_other_calls_keep_their_rate(relay_factory):
    relay = await relay_factory()
    limit = relay.app[keys.SETTINGS].device_event_max_bytes
    loop = asyncio.get_running_loop()
    victim, attacker = relay.device(), relay.device()
    events: list[dict] = []
    await victim.connect()
    answer = await attacker.connect(on_event=events.append)
    try:
        # the answer advertises the limit relay enforces
        assert re.search(r"^a=max-message-size:(\d+)\r?$", answer, re.M).group(1) == str(limit)
        # the attacker's aiortc would refuse to send over the advertised size: make it ignore it
        attacker.pc.sctp._remote_max_message_size = 0

        base, base_s = await packets_during(victim, asyncio.sleep(2.0), loop)
        attacker.channel.send('{"type":"session.update","pad":"' + "x" * (16 * MB) + '"}')
        sent_at = loop.time()
        # the refusal arrives; then the rest of the 16 MB keeps arriving (and is dropped) for a while
        attack, attack_s = await packets_during(
            victim, wait_for(lambda: bool(too_large(events)) and loop.time() - sent_at > 3.0, 20.0), loop)
        print(f"\nvictim downlink: {base} packets in {base_s:.1f} s before, {attack} in {attack_s:.1f} s "
              f"during the 16 MB message (refused after {len(too_large(events))} error event(s))")
        assert attack / attack_s >= 0.8 * base / base_s
        assert relay.plane.metrics.dc_messages_too_large == 1
        assert victim.connected and attacker.connected

        # the call goes on: a normal message still works after the refused one (once the rest of the
        # 16 MB ahead of it on the same ordered stream has been sent, acknowledged and dropped)
        await wait_for(lambda: attacker.channel.bufferedAmount == 0, 120.0)
        attacker.send_text("still here")
        await wait_for(lambda: any(e["type"] == "response.done" for e in events), 30.0)

        # a device that keeps doing it loses the call
        attacker.channel.send("y" * (2 * limit))
        attacker.channel.send("z" * (2 * limit))
        await wait_for(lambda: len(too_large(events)) >= 3, 60.0)
        await wait_for(lambda: relay.plane.metrics.calls_ended_by_reason.get("message_too_large") == 1, 30.0)
        assert victim.connected
        assert victim.receiver.stats.packets > base
    finally:
        await attacker.hangup()
        await victim.hangup()
    await relay.wait_idle()
