"""Microbenchmark: one uplink datagram through the worker's ICE port into a real ``UplinkSink``.

``CALLS`` calls on real sockets, each sending ``ROUNDS`` SRTP-protected 20 ms Opus packets (48 kHz,
32 kb/s, FEC on, as devices send); the port's compiled receiver (``relay._fast.MuxReceiver``) drains
them with ``recvmmsg``, unprotects, parses, updates the receive statistics and hands each payload to
the call's sink, which decodes to 24 kHz and chunks (40 ms). Reported: CPU time of the drain per
datagram, everything above included. Runs against any tree: where the sink has a compiled assembler
(``UplinkSink.assembler``) the port is armed with it (fed from C), else with ``push_direct`` (a
Python call per packet, the ctypes decode), so the same command measures before and after::

    env -C <tree> PYTHONPATH=<tree> python -m bench.uplink_port     # e.g. main vs a branch, alternated
"""

from __future__ import annotations

import argparse
import socket
import struct
import time
from typing import Any

import numpy as np
import pylibsrtp

from relay._fast import MuxReceiver, StreamStats
from relay.call.metrics import MediaMetrics
from relay.media.codecs import OPUS
from relay.media.opus import OpusEncoder
from relay.media.uplink import UplinkSink

PT = 111


def _policy(direction: int, key: bytes) -> pylibsrtp.Policy:
    return pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)


def _opus(rounds: int) -> list[bytes]:
    enc = OpusEncoder(48000, bitrate_bps=32000, fec=True)
    t = np.arange(48000 * (rounds // 50 + 1)) / 48000
    pcm = (6000 * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype("<i2").tobytes()
    try:
        return [enc.encode(pcm[i * 1920:(i + 1) * 1920]) for i in range(rounds)]
    finally:
        enc.close()


def run(calls: int = 32, rounds: int = 150) -> dict[str, Any]:
    opus = _opus(rounds)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    devices: list[tuple[socket.socket, list[bytes]]] = []
    sinks: list[UplinkSink] = []
    metrics = MediaMetrics()
    chunks = [0]

    def on_chunk(_chunk: bytes, _arrival: float) -> None:
        chunks[0] += 1

    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        receiver = MuxReceiver(64, 2048)
        compiled = False
        for i in range(calls):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            key = bytes([i + 1]) * 30
            tx = pylibsrtp.Session(_policy(pylibsrtp.Policy.SSRC_ANY_OUTBOUND, key))
            slot = receiver.new_slot()
            receiver.bind("127.0.0.1", sock.getsockname()[1], slot)
            sink = UplinkSink(OPUS, chunk_ms=40, on_chunk=on_chunk, metrics=metrics, max_packets_per_s=1e6)
            push = getattr(sink, "assembler", None)
            compiled = push is not None
            receiver.arm(slot, pylibsrtp.Session(_policy(pylibsrtp.Policy.SSRC_ANY_INBOUND, key)), [PT], 1000 + i,
                         StreamStats(48000), sink.push_direct if push is None else push)
            datagrams = [tx.protect(struct.pack("!BBHII", 0x80, PT, r, 960 * r, 1000 + i) + opus[r])
                         for r in range(rounds)]
            devices.append((sock, datagrams))
            sinks.append(sink)
        dest = rx.getsockname()
        spent_s = 0.0
        taken = 0
        for r in range(rounds):
            for sock, datagrams in devices:
                sock.sendto(datagrams[r], dest)
            start = time.process_time()
            while True:
                receiver.recv(rx, 1.0, 2.0)
                if not receiver.received:
                    break
                taken += receiver.received
            spent_s += time.process_time() - start
        for sink in sinks:
            getattr(sink, "sync", lambda: None)()
            sink.close()
        if not (metrics.rtp_in_packets == taken == calls * rounds and metrics.rtp_in_bad == 0
                and receiver.push_errors == 0):
            raise RuntimeError(f"not every datagram reached a sink: {taken} taken, {metrics}")
        return {"us_per_datagram": round(spent_s / taken * 1e6, 2), "datagrams": taken, "chunks": chunks[0],
                "assembler": compiled}
    finally:
        rx.close()
        for sock, _ in devices:
            sock.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.uplink_port", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is reported too")
    args = ap.parse_args(argv)
    results = [run(args.calls, args.rounds) for _ in range(args.repeat)]
    for r in results:
        print(r)
    print("best us/datagram:", min(r["us_per_datagram"] for r in results))


if __name__ == "__main__":
    main()
