"""Microbenchmark: one uplink SRTP datagram, socket callback -> uplink sink, aiortc's path vs the direct path.

Two real loopback calls (relay's receiver + a silent aiortc device, uvloop as in ``relay serve``);
each round injects ``PACKETS`` freshly protected audio datagrams at relay's UDP protocol, one at a
time, each followed by one event-loop iteration (``asyncio.sleep(0)``, the wake-up a datagram
costs anyway, in which aiortc's DTLS task runs; ``settle`` repeats it while anything is queued). Collected as ordinary tests (pyproject sets
``--benchmark-disable``: each body runs once and its assertions hold). Numbers, as in docs/media.md::

    pytest tests/media/test_rtp_in_bench.py --benchmark-enable --benchmark-only -q

PCMU isolates the receive path (the sink only copies bytes); Opus adds the libopus decode both
paths share. ``test_event_loop_iteration_baseline`` is the loop iterations alone.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from relay.media.codecs import OPUS, PCMU
from tests.media import rtp_harness as h

PACKETS = 200
ROUNDS = 30


@pytest.mark.parametrize("direct", [False, True], ids=["aiortc", "direct"])
@pytest.mark.parametrize("codec", [PCMU, OPUS], ids=["pcmu", "opus"])
def test_uplink_datagram_cost(benchmark, codec, direct) -> None:
    benchmark.group = f"uplink {codec.name}: {PACKETS} SRTP datagrams, socket -> sink"
    loop = uvloop.new_event_loop()
    try:
        side = loop.run_until_complete(h.connect(codec, direct=direct))
        pt = h.payload_type(side)
        payloads = h.speech_payloads(codec, 50)
        step = 960 if codec.name == "opus" else 160
        rounds = iter(range(1000))

        def make_round():
            r = next(rounds)
            datagrams = [side.protect(h.rtp(pt=pt, seq=r * PACKETS + i, ts=(r * PACKETS + i) * step,
                                            ssrc=0xBEEF, payload=payloads[i % 50]))
                         for i in range(PACKETS)]
            return (datagrams,), {}

        async def feed(datagrams: list[bytes]) -> None:
            for d in datagrams:
                side.inject(d)
                await side.settle()  # one loop turn (more only while the device's own RTCP is queued)

        def run(datagrams: list[bytes]) -> None:
            loop.run_until_complete(feed(datagrams))

        benchmark.pedantic(run, setup=make_round, rounds=ROUNDS, iterations=1)
        fed = side.metrics.rtp_in_packets
        assert fed >= PACKETS and fed % PACKETS == 0
        assert side.sink.direct_packets == (fed if direct else 0)
        assert side.metrics.rtp_in_late == 0 and side.metrics.rtp_in_lost == 0 and side.metrics.rtp_in_bad == 0
        assert len(side.chunks) >= fed // 2 - 1  # 40 ms chunks of 20 ms packets
        loop.run_until_complete(side.close())
    finally:
        loop.close()


def test_event_loop_iteration_baseline(benchmark) -> None:
    """What the per-datagram ``asyncio.sleep(0)`` alone costs: subtract it from both paths' figures."""
    benchmark.group = "uplink PCMU: 200 SRTP datagrams, socket -> sink"
    loop = uvloop.new_event_loop()

    async def spin() -> int:
        n = 0
        for _ in range(PACKETS):
            await asyncio.sleep(0)
            n += 1
        return n

    try:
        assert benchmark.pedantic(lambda: loop.run_until_complete(spin()), rounds=ROUNDS, iterations=1) == PACKETS
    finally:
        loop.close()
