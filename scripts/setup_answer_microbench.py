"""Microbenchmark: relay's side of the SDP exchange (``Peer.answer``) and DTLS context set-up, CPU per call.

    PYTHONPATH=. python scripts/setup_answer_microbench.py [--n 300] [--busy-ms 4]

Alternates ``before`` (aiortc's own: a new key + certificate per connection, aioice's host-candidate
gathering with ``create_datagram_endpoint(local_addr=...)``) and ``after`` (relay.media.dtls: one
certificate per worker with cached fingerprints and OpenSSL context; relay.media.ice's gatherer
binding sockets itself), on an idle event loop and on a busy one (``--busy-ms``: every 1 ms a
callback holding the loop for busy_ms/5, every 20 ms one holding it for busy_ms, as a loaded
worker's packet callbacks and media-clock ticks do). Reports CPU, wall time and event-loop turns
per answer. The offer is a real aiortc device's (audio + data channel), ICE on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCCertificate
from busyloop import busy as busy_loop  # scripts/busyloop.py (this script's folder is on sys.path)

from relay.call.metrics import MediaMetrics
from relay.media import dtls, ice
from relay.media import peer as peer_mod
from relay.media.codecs import choose_audio_codec, parse_offer
from relay.media.compat import ice as compat_ice
from relay.media.downlink import DownlinkEncoder, PacketTrack
from relay.media.uplink import UplinkSink


async def _offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp




class _Turns:
    """Counts event-loop iterations: a callback that re-schedules itself once per iteration."""

    def __init__(self) -> None:
        self.n = 0
        self._on = False

    def start(self) -> None:
        self.n, self._on = 0, True
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        if self._on:
            self.n += 1
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> int:
        self._on = False
        return self.n


async def _answer(sdp: str, metrics: MediaMetrics, turns: _Turns) -> tuple[float, float, int]:
    codec = choose_audio_codec(parse_offer(sdp), allow_g711=True)
    sink = UplinkSink(codec, chunk_ms=40, on_chunk=lambda c, a: None, metrics=metrics)
    p = peer_mod.Peer(codec=codec, track=PacketTrack(DownlinkEncoder(codec)), sink=sink, metrics=metrics,
                      on_message=lambda m: None, on_closed=lambda r: None)
    turns.start()
    t0, c0 = time.perf_counter(), time.process_time()
    await p.answer(sdp)
    c1, t1 = time.process_time(), time.perf_counter()
    n = turns.stop()
    await p.close()
    return (c1 - c0) * 1e3, (t1 - t0) * 1e3, n


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--busy-ms", type=float, default=4.0)
    a = ap.parse_args()
    ice.configure_host_addresses(["127.0.0.1"])  # relay's peers
    compat_ice.set_default_host_addresses(["127.0.0.1"])  # the plain aiortc peer that writes the offer
    metrics = MediaMetrics()
    sdp = await _offer()
    worker_pc, relay_gatherer = dtls.peer_connection, ice.install_gatherer
    modes = {
        "before": (lambda cfg, cert: RTCPeerConnection(cfg), lambda pc, port_range=None: None),
        "after": (worker_pc, relay_gatherer),
    }
    turns = _Turns()
    for busy in (False, True):
        stop = asyncio.Event()
        task = asyncio.create_task(busy_loop(stop, a.busy_ms)) if busy else None
        samples: dict[str, list[tuple[float, float, int]]] = {m: [] for m in modes}
        for i in range(a.n * 2 + 40):
            mode = "before" if i % 2 else "after"
            dtls.peer_connection, ice.install_gatherer = modes[mode]  # the names Peer.answer calls
            r = await _answer(sdp, metrics, turns)
            if i >= 40:
                samples[mode].append(r)
        stop.set()
        if task is not None:
            await task
        for mode, v in samples.items():
            cpu, wall = sorted(x[0] for x in v), sorted(x[1] for x in v)
            print(f"{'busy' if busy else 'idle'} loop, {mode:6s}: Peer.answer CPU median {statistics.median(cpu):.3f} ms; "
                  f"wall p50 {statistics.median(wall):.2f} p99 {wall[int(len(wall) * 0.99) - 1]:.2f} ms; "
                  f"loop turns median {statistics.median(x[2] for x in v):.0f}")
    dtls.peer_connection, ice.install_gatherer = worker_pc, relay_gatherer
    n = 300
    fresh = RTCCertificate.generateCertificate()
    shared = dtls.current()
    for name, fn in (("generateCertificate", RTCCertificate.generateCertificate),
                     ("getFingerprints (aiortc, x4 per answer)", fresh.getFingerprints),
                     ("getFingerprints (worker, x4 per answer)", shared.getFingerprints),
                     ("_create_ssl_context (aiortc, per DTLS start)", lambda: fresh._create_ssl_context(SRTP_PROFILES)),
                     ("_create_ssl_context (worker, per DTLS start)", lambda: shared._create_ssl_context(SRTP_PROFILES))):
        t = time.process_time()
        for _ in range(n):
            fn()
        print(f"{name}: {(time.process_time() - t) / n * 1e3:.3f} ms")


if __name__ == "__main__":
    uvloop.run(main())
