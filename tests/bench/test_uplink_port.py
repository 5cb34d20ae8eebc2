"""The uplink-through-the-port microbenchmark: every datagram reaches a sink, chunked, through the compiled assembler."""

from __future__ import annotations

from bench.uplink_port import run


def test_every_datagram_reaches_the_sinks_through_the_assembler():
    out = run(calls=3, rounds=20)
    assert out["datagrams"] == 60 and out["chunks"] == 30  # 20 ms packets, 40 ms chunks
    assert out["assembler"] is True and out["us_per_datagram"] > 0
